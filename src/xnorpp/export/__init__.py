"""Export: a trained model to one packed file for :mod:`xnorpp.runtime`, and a packed file to OpenVINO.

>>> from xnorpp.export import export_model, to_openvino
>>> export_model(model_or_checkpoint, "model.xnor")   # or: xnorpp export CHECKPOINT -o model.xnor
>>> to_openvino("model.xnor", "ir")                     # or: xnorpp export model.xnor --format openvino -o ir

:mod:`.model` (with :mod:`.graph`) is the only torch → packed bridge: it traces the model with torch.fx
and writes one safetensors file (1 bit per binary weight, folded output stages, the graph as JSON);
a layer the runtime cannot run raises :class:`ExportError` naming it. :mod:`.openvino` turns a packed
file into an OpenVINO IR (binary layers as BinaryConvolution) and needs no PyTorch, so its names are
imported here and the PyTorch ones load when first used.
"""

from importlib import import_module

from .openvino import OPENVINO_EXTRA, export_openvino, openvino_model, to_openvino

_TORCH_NAMES = {"export_model": ".model", "build_graph": ".model", "export_and_measure": ".model",
                "format_measurement": ".model", "float_checkpoint_bytes": ".model",
                "ExportError": ".graph", "SUPPORTED_MODULES": ".graph"}


def __getattr__(name):
    if name in _TORCH_NAMES:
        return getattr(import_module(_TORCH_NAMES[name], __name__), name)
    raise AttributeError(f"module 'xnorpp.export' has no attribute {name!r}")


__all__ = [*_TORCH_NAMES, "to_openvino", "openvino_model", "export_openvino", "OPENVINO_EXTRA"]
