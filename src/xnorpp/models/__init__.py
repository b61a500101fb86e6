"""Model families with a registry: ``create(name, **kw)``, ``list_models(pattern)``, ``model_options(name)``, and ``convert``.

Families: ``resnet18``, ``resnet34`` (XNOR-Net++'s binary ResNet), ``alexnet``
(XNOR-Net's binary AlexNet), ``fmnist-net`` (small binary ResNet for 28×28), and
``float-<name>`` baselines of each.
"""

from . import alexnet as _alexnet  # noqa: F401  (registers the family)
from . import resnet as _resnet  # noqa: F401
from . import small as _small  # noqa: F401
from .alexnet import AlexNet
from .convert import ConversionReport, convert
from .registry import check_options, create, list_models, model_options, register_model
from .resnet import BasicBlock, ResNet

__all__ = ["create", "list_models", "model_options", "check_options", "register_model", "convert", "ConversionReport", "ResNet", "BasicBlock",
           "AlexNet"]
