"""The packed CPU runtime: run an exported binary network with numpy and the compiled core, no PyTorch.

>>> import xnorpp.runtime
>>> model = xnorpp.runtime.load("model.xnor")     # written by `xnorpp export`
>>> logits = model(images)                         # float32 numpy array (N, C, H, W)

Binary layers run bit-packed kernels (1 bit per weight and activation, XNOR + popcount)
with an instruction-set path chosen once from the CPU. On x86-64: ``amx`` (Intel AMX tiles: the binary
convolutions and the int8 input layer as int8 tile products, the rest as ``avx512``), ``avx512`` (AVX-512
VPOPCNTDQ + VNNI), ``avx2``; on 64-bit ARM: ``neon-dotprod`` (``neon`` with the int8 input layer on SDOT),
``neon``; anywhere: ``portable``. :func:`isa_units` lists them with their compile flags and CPU checks. The
environment variable ``XNORPP_ISA`` forces one (an error if the CPU lacks it); :func:`set_isa` does the same
for layers loaded afterwards.
Threads: ``load(path, threads=N)``, :func:`set_num_threads` or ``XNORPP_NUM_THREADS``;
during a model's call the threads wait for its next layer by spinning; between calls they sleep (after
spinning :func:`set_spin_us` microseconds, 0 by default).
"""

from __future__ import annotations

from .. import _core
from ..packed import FORMAT_VERSION, SUFFIX, ModelFormatError
from .model import PackedModel, load


def isa() -> str:
    """The instruction-set path new layers use, e.g. 'avx512', 'neon' or 'portable'."""
    return _core.isa()


def set_isa(name: str) -> None:
    """Force an instruction-set path (one of :func:`supported_isas`, or 'auto') for layers loaded after."""
    _core.set_isa(name)


def isa_units() -> list[dict]:
    """Every instruction-set unit of the project (csrc/units.def), best first: ``name``, ``arch``, compile
    ``flags``, the CPU ``features`` checked at run time, whether this build has it (``built``) and whether this
    CPU runs it (``supported``)."""
    return [dict(u) for u in _core.isa_units()]


def supported_isas() -> list[str]:
    """The instruction-set paths this CPU can run, best first."""
    return list(_core.supported_isas())


def num_threads() -> int:
    return _core.num_threads()


def set_num_threads(threads: int) -> None:
    """Number of threads of the packed kernels (>= 1)."""
    _core.set_num_threads(int(threads))


def spin_us() -> int:
    return _core.spin_us()


def set_spin_us(us: int) -> None:
    """How long an idle kernel thread spins between calls before it sleeps, in microseconds (default 0:
    never, or ``XNORPP_SPIN_US``). Within a model's call the threads always wait for the next layer by
    spinning; this also keeps them awake for the next call, at the cost of a busy core meanwhile."""
    _core.set_spin_us(int(us))


__all__ = ["load", "PackedModel", "ModelFormatError", "FORMAT_VERSION", "SUFFIX", "isa", "set_isa",
           "isa_units", "supported_isas", "num_threads", "set_num_threads",
           "spin_us", "set_spin_us"]
