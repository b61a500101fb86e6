"""The packed contract between the exporter and the runtime, in one place (numpy and safetensors only).

- :mod:`.geometry` — conv and pool output sizes, the one padding layout, the size bounds;
- :mod:`.bits` — the bit layout of binary weights and the one packer;
- :mod:`.schema` — the graph: one typed description per op (:data:`OPS`), validation of every field;
- :mod:`.format` — the ``.xnor`` file (safetensors + JSON graph + checksum), read and write;
- :mod:`.plan` — the fusion plan the runtime runs.

Neither torch nor anything that imports it is imported here: ``xnorpp.export`` builds graphs with
this package, ``xnorpp.runtime`` runs them.
"""

from .format import FORMAT_VERSION, SUFFIX, ModelFormatError, read, write
from .plan import Step, plan
from .schema import OPS, Graph, Node, OpSpec


def load_graph(path) -> tuple[Graph, dict]:
    """Read and validate the packed model at ``path``: ``(graph, tensors)``."""
    graph_json, tensors = read(path)
    return Graph.from_json(graph_json, tensors, repr(str(path))), tensors


__all__ = ["FORMAT_VERSION", "SUFFIX", "ModelFormatError", "OPS", "Graph", "Node", "OpSpec", "Step", "plan",
           "read", "write", "load_graph"]
