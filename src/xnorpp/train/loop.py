"""The training loop: ``train(config) -> TrainResult``, and ``evaluate``."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as D
from .checkpoint import CHECKPOINT, FINAL_MODEL, build_model, load_file, load_state_checked, save_atomic
from .config import TrainConfig
from .recipes import get_recipe
from .stages import set_stage

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "epoch_time_s",
                 "images_per_s")
# Fields that must agree between a run and the checkpoint it resumes from.
RESUME_KEYS = ("model", "dataset", "scaling", "recipe", "epochs", "batch_size", "lr", "weight_decay", "seed",
               "model_opts", "ste", "train_subset")
# Measured with benchmarks/bench_train_step.py (one and two CPU threads): compiling costs 36-80 s for fmnist-net
# (batch 128) and 56 s for ResNet-18 at 64×64 (batch 32) and saves 0.02-0.05 s per step, so it pays after about
# 900-4 200 steps; shorter runs (the demo: 2 345) stay eager unless asked (TrainConfig.compile, --compile).
COMPILE_MIN_STEPS = 5000
ESTIMATE_STEPS = 20  # training steps timed before the run says how long it will take
NO_DECAY_SUFFIXES = ("scale_channel", "scale_height", "scale_width", "scale_spatial", "scale_full", "bias")


@dataclass
class TrainResult:
    """What a run produced; ``finished`` is False when ``stop_after`` ended it early."""

    run_dir: str
    model: str
    dataset: str
    scaling: str
    recipe: str
    epochs: int
    test_top1: float
    test_top5: float
    test_loss: float
    best_top1: float
    train_time_s: float
    images_per_s: float
    params: int
    finished: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay only on conv/linear weights: never on scaling factors, PReLU, BatchNorm or biases."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            plain = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if plain and weight_decay > 0 else no_decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.insert(0, {"params": decay, "weight_decay": weight_decay})
    return groups


def clip_latent_weights(model: nn.Module) -> None:
    """Clamp the latent weights of binary layers to [−1, 1] (outside it the clipped STE gives no gradient)."""
    from ..nn import BinaryLayer
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BinaryLayer):
                m.weight.clamp_(-1.0, 1.0)


@torch.no_grad()
def evaluate_sums(model: nn.Module, loader, device: torch.device, *, amp: bool = False,
                  channels_last: bool = False) -> tuple[float, float, float, float]:
    """(loss sum, top-1 correct, top-5 correct, count) over ``loader`` — local to this process."""
    model.eval()
    loss_sum = c1 = c5 = n = 0.0
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        with _autocast(device, amp):
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        k = min(5, out.shape[1])
        top = out.topk(k, dim=1).indices
        hit = top == y.view(-1, 1)
        c1 += hit[:, 0].sum().item()
        c5 += hit.any(dim=1).sum().item()
        n += len(y)
    return loss_sum, c1, c5, n


def evaluate(model, dataset: str = "fashion-mnist", split: str = "test", *, data_root=None, batch_size: int = 512,
             device: str = "auto") -> dict:
    """Top-1 / top-5 accuracy (%) and mean loss of ``model`` (a module, run folder or checkpoint) on a data set."""
    from ..data import get_dataset, make_loader
    from .checkpoint import load_model
    dev = D.pick_device(device)
    if not isinstance(model, nn.Module):
        model = load_model(model)
    model = model.to(dev)
    loader = make_loader(get_dataset(dataset, split, data_root), batch_size, train=False, device=str(dev))
    loss, c1, c5, n = evaluate_sums(model, loader, dev)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss / n, "count": int(n)}


def _to_device(x, y, device, channels_last):
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(_flatten_py_state(random.getstate()))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _flatten_py_state(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def use_compile(setting: bool | None, steps: int, device: torch.device) -> bool:
    """Whether to torch.compile the training step: ``setting`` when given; else when the run has at least
    :data:`COMPILE_MIN_STEPS` steps and, on the CPU, a C++ compiler for inductor's kernels."""
    if setting is not None:
        return setting
    if steps < COMPILE_MIN_STEPS:
        return False
    return device.type != "cpu" or shutil.which(os.environ.get("CXX", "c++")) is not None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _run_dir(cfg: TrainConfig, info: D.DistInfo) -> Path:
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.out_dir) / f"{stamp}-{cfg.dataset}-{cfg.model}-{cfg.scaling}-{cfg.recipe}"
    return Path(D.broadcast_object(str(path), info))


def _check_resume(cfg: TrainConfig, saved: dict, file: Path) -> None:
    diffs = [f"{k}: run {getattr(cfg, k)!r} vs checkpoint {saved.get(k)!r}" for k in RESUME_KEYS
             if saved.get(k) != getattr(cfg, k)]
    if diffs:
        raise ValueError(f"cannot resume from {file}: it was made with a different configuration ({'; '.join(diffs)}). "
                         "Use the same settings (xnorpp train --resume RUN_DIR reuses the saved ones) or a new run folder")


def _write_metrics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in METRIC_FIELDS})
    os.replace(tmp, path)


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def _open_tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed; metrics go to metrics.csv only", file=sys.stderr)
        return None
    return SummaryWriter(str(run_dir / "tb"))


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) the run ``config`` describes; see :class:`TrainConfig` and the run folder layout
    in the package docstring. Works single-process and under ``torchrun`` (DDP)."""
    cfg = config.resolved()
    info = D.setup(cfg.device)
    try:
        return _train(cfg, info)
    finally:
        D.cleanup(info)


def _train(cfg: TrainConfig, info: D.DistInfo) -> TrainResult:
    from ..data import get_dataset, make_loader
    from ..data.datasets import InMemoryDataset
    recipe = get_recipe(cfg.recipe)
    device = info.device
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(cfg.threads or max(1, cores // info.local_world_size))
    channels_last = cfg.channels_last and cuda
    amp = cfg.amp and cuda

    run_dir = _run_dir(cfg, info)
    ckpt_path = run_dir / CHECKPOINT
    if not cfg.resume and ckpt_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run ({CHECKPOINT}); resume it with "
                              f"`xnorpp train --resume {run_dir}` or choose another --run-dir")

    train_set = get_dataset(cfg.dataset, "train", cfg.data_root)
    test_set = get_dataset(cfg.dataset, "test", cfg.data_root)
    if cfg.train_subset:
        if not isinstance(train_set, InMemoryDataset):
            raise ValueError("train_subset works with in-memory data sets only")
        n = min(cfg.train_subset, len(train_set))
        train_set = InMemoryDataset(train_set.images[:n], train_set.labels[:n], train_set.info)
    train_loader = make_loader(train_set, cfg.batch_size, train=True, augment=cfg.augment, seed=cfg.seed,
                               rank=info.rank, world_size=info.world_size, workers=cfg.workers, device=str(device))
    test_loader = make_loader(test_set, max(cfg.batch_size, 256), train=False, rank=info.rank,
                              world_size=info.world_size, workers=cfg.workers, device=str(device))

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    random.seed(cfg.seed)
    model = build_model(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = count_parameters(model)
    optimizer = torch.optim.Adam(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: recipe.lr_factor(s, total_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start_epoch, best_top1, train_time = 0, 0.0, 0.0
    if cfg.resume and ckpt_path.exists():
        state = load_file(ckpt_path)
        _check_resume(cfg, state.get("config", {}), ckpt_path)
        load_state_checked(model, state["model"], f"checkpoint {ckpt_path}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and amp:
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1 = int(state["epoch"]), float(state.get("best_top1", 0.0))
        train_time = float(state.get("train_time_s", 0.0))
        rng = state["rng"]
    else:
        rng = None
    torch.manual_seed(cfg.seed + 1 + info.rank)  # per-rank randomness (dropout) from here on
    if rng is not None and not info.enabled:
        _set_rng_state(rng)

    metrics_path = run_dir / "metrics.csv"
    rows = _read_metrics(metrics_path, start_epoch) if info.is_main else []
    if info.is_main:  # created only now: a run that fails to start leaves no empty folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "config.json", "w") as f:
            json.dump(cfg.to_dict(), f, indent=2)
    writer = _open_tensorboard(run_dir, cfg.tensorboard) if info.is_main else None

    net = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    eval_net = net  # evaluation stays eager: compiling its graph too would cost more than it saves
    if use_compile(cfg.compile, total_steps, device):  # the whole run's length: a resumed part decides alike
        net = torch.compile(net)

    last = {"test_top1": float("nan"), "test_top5": float("nan"), "test_loss": float("nan"), "images_per_s": 0.0}
    if rows:
        last.update({k: rows[-1][k] for k in last})
    epochs_run = 0
    show = info.is_main and cfg.progress
    from tqdm.auto import tqdm
    say = tqdm.write if show else print  # tqdm.write keeps the progress bar (on stderr) intact
    if info.is_main:
        print(f"training {cfg.model} ({cfg.scaling}) on {cfg.dataset}, recipe {cfg.recipe}: epochs "
              f"{start_epoch + 1}-{cfg.epochs} of {cfg.epochs}, {steps_per_epoch} steps of batch {cfg.batch_size} "
              f"each, run folder {run_dir}\nCtrl-C stops it; each finished epoch is saved: continue with "
              f"`xnorpp train --resume {run_dir}`", flush=True)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.stop_after is not None and epochs_run >= cfg.stop_after:
                break
            set_stage(model, recipe.stage(epoch, cfg.epochs))
            train_loader.set_epoch(epoch)
            net.train()
            t0 = time.perf_counter()
            loss_sum = correct = seen = 0.0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show,
                       leave=True, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
            for i, (x, y) in enumerate(train_loader):
                x, y = _to_device(x, y, device, channels_last)
                with _autocast(device, amp):
                    out = net(x)
                    loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if cfg.clip_weights:
                    clip_latent_weights(model)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
                                             "try a lower --lr")
                n = len(y)
                loss_sum += loss.item() * n
                correct += (out.argmax(1) == y).sum().item()
                seen += n
                # The estimate leaves the first step out: with --compile it compiles (a minute), and
                # counting it made a 40-minute run look like 8 hours.
                if i == 0:
                    t_first = time.perf_counter()
                timed = min(ESTIMATE_STEPS, steps_per_epoch - 1)
                if epochs_run == 0 and info.is_main and i == timed:
                    now = time.perf_counter()
                    per_epoch = ((now - t_first) / i if i else now - t0) * steps_per_epoch
                    steps = f"steps 2-{i + 1}" if i else "the first step"
                    left = cfg.epochs - epoch if cfg.stop_after is None else min(cfg.stop_after, cfg.epochs - epoch)
                    say(f"estimate from {steps}: {_duration(per_epoch)} per epoch, about "
                        f"{_duration(per_epoch * left)} for the {left} epoch{'s' if left > 1 else ''} of this run "
                        "(plus testing)")
                if show:
                    bar.update(1)
                    if i % 10 == 0 or i == steps_per_epoch - 1:
                        rate = seen * info.world_size / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                                        img_s=f"{rate:.0f}", refresh=False)
            bar.close()
            epoch_time = time.perf_counter() - t0
            loss_sum, correct, seen = D.all_reduce_sums([loss_sum, correct, seen], info)
            test_loss, c1, c5, tn = D.all_reduce_sums(
                list(evaluate_sums(eval_net, test_loader, device, amp=amp, channels_last=channels_last)), info)
            train_time += epoch_time
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                   "train_top1": 100 * correct / seen, "test_loss": test_loss / tn, "test_top1": 100 * c1 / tn,
                   "test_top5": 100 * c5 / tn, "epoch_time_s": epoch_time, "images_per_s": seen / epoch_time}
            rows.append(row)
            best_top1 = max(best_top1, row["test_top1"])
            last = {k: row[k] for k in last}
            epochs_run += 1
            if info.is_main:  # the log line of an epoch, bars or not (background runs keep their logs too)
                print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc "
                      f"{row['train_top1']:.2f}% | test top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}% "
                      f"| {row['images_per_s']:.0f} img/s, {epoch_time:.0f} s", flush=True)
                _write_metrics(metrics_path, rows)
                if writer is not None:
                    for k in METRIC_FIELDS[1:]:
                        writer.add_scalar(k, row[k], epoch + 1)
                    writer.flush()
                save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state(),
                             "epoch": epoch + 1, "best_top1": best_top1, "train_time_s": train_time,
                             "config": cfg.to_dict()}, ckpt_path)
    except KeyboardInterrupt:
        if info.is_main:
            print(f"\ninterrupted: continue from the last finished epoch with `xnorpp train --resume {run_dir}`",
                  file=sys.stderr, flush=True)
        raise
    if writer is not None:
        writer.close()

    done = bool(rows) and rows[-1]["epoch"] == cfg.epochs
    result = TrainResult(run_dir=str(run_dir), model=cfg.model, dataset=cfg.dataset, scaling=cfg.scaling,
                         recipe=cfg.recipe, epochs=cfg.epochs, test_top1=last["test_top1"],
                         test_top5=last["test_top5"], test_loss=last["test_loss"], best_top1=best_top1,
                         train_time_s=train_time, images_per_s=last["images_per_s"], params=params, finished=done)
    if info.is_main and done:
        save_atomic({"model": model.state_dict(), "config": cfg.to_dict()}, run_dir / FINAL_MODEL)
        with open(run_dir / "result.json.tmp", "w") as f:
            json.dump(result.to_dict(), f, indent=2)
        os.replace(run_dir / "result.json.tmp", run_dir / "result.json")
    if info.enabled:
        torch.distributed.barrier()
    return result
