"""Analysis tools for the paper's tables and figures.

* :func:`summary` — per-layer parameters, memory and MACs by precision, packed size;
* :func:`approximation_error` — how well each scaling approximates the real convolution;
* :func:`compare` — train one architecture with each scaling and tabulate the results;
* :func:`report` — a Markdown/HTML page with plots for a run or a comparison folder;
* :func:`write_paired` — paired differences by seed, epoch by epoch, between arms of several comparison folders.
"""

from .approx import SCHEMES, ApproxReport, LayerApprox, approximation_error, binary_layers
from .compare import DEFAULT_SCALINGS, Comparison, compare, load_comparison
from .paired import Arm, PairedCurves, paired_epochs, write_paired
from .report import report
from .summary import LayerSummary, ModelSummary, summary

__all__ = ["summary", "ModelSummary", "LayerSummary", "approximation_error", "ApproxReport", "LayerApprox",
           "SCHEMES", "binary_layers", "compare", "Comparison", "load_comparison", "DEFAULT_SCALINGS", "report",
           "Arm", "PairedCurves", "paired_epochs", "write_paired"]
