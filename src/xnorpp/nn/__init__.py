"""Binary layers and quantizers (PyTorch)."""

from .layers import PAD_VALUES, BinaryConv2d, BinaryLayer, BinaryLinear, name_layers
from .quantizers import STE_NAMES, binarize, sign_ste

__all__ = ["BinaryConv2d", "BinaryLinear", "BinaryLayer", "name_layers", "sign_ste", "binarize",
           "STE_NAMES", "PAD_VALUES"]
