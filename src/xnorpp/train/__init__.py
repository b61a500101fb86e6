"""Training: ``train(TrainConfig) -> TrainResult``, named recipes, checkpoints, DDP, the demo.

Run folder layout (one per run)::

    config.json      the TrainConfig (recipe values filled in)
    metrics.csv      one row per epoch: epoch, lr, train_loss, train_top1, test_loss, test_top1,
                     test_top5, epoch_time_s, images_per_s
    tb/              TensorBoard events
    checkpoint.pt    latest epoch, written atomically: model, optimizer, scheduler, scaler, rng, epoch,
                     best_top1, train_time_s, config   (torch.load(..., weights_only=True))
    model.pt         final {"model": state_dict, "config": ...}
    result.json      written last: the run finished
"""

from .checkpoint import build_model, load_config, load_model, load_state_checked, save_atomic
from .config import TrainConfig
from .loop import TrainResult, count_parameters, evaluate, param_groups, train
from .recipes import RECIPES, Recipe, get_recipe

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "load_model", "load_config", "build_model",
           "load_state_checked", "save_atomic", "count_parameters", "param_groups", "RECIPES", "Recipe",
           "get_recipe"]
