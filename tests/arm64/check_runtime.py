"""make test-arm64, the arm64 half: run on aarch64 (under qemu-aarch64) the packed models exported on x86.

    python3 tests/arm64/check_runtime.py DIR      (DIR written by tests/arm64/export_models.py)

Needs numpy and the xnorpp runtime only (no PyTorch). For every model and every unit this CPU runs
(neon-dotprod, neon, portable): the same top-1 as on x86 and logits within the float bound (1e-4 of the
largest logit) of every x86 unit's; the binary parts are integer-exact on both, so what differs is float
rounding (FMA or not, numpy's BLAS). Exits 1 on a failure.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from xnorpp import runtime

TOLERANCE = 1e-4


def main() -> int:
    folder = Path(sys.argv[1])
    manifest = json.loads((folder / "manifest.json").read_text())
    isas = runtime.supported_isas()
    print(f"arm64 runtime: {platform.machine()}, units {', '.join(isas)}; x86 units {', '.join(manifest['isas'])}")
    failures = 0
    for name in manifest["models"]:
        x = np.load(folder / f"{name}.input.npy")
        reference = {isa: np.load(folder / f"{name}.{isa}.npy") for isa in manifest["isas"]}
        for isa in isas:
            runtime.set_isa(isa)
            logits = runtime.load(folder / f"{name}.xnor")(x)
            worst, identical = 0.0, []
            for x86, ref in reference.items():
                scale = max(float(np.abs(ref).max()), 1e-30)
                worst = max(worst, float(np.abs(logits - ref).max()) / scale)
                if np.array_equal(logits, ref):
                    identical.append(x86)
            same_top1 = all((logits.argmax(1) == ref.argmax(1)).all() for ref in reference.values())
            ok = same_top1 and worst <= TOLERANCE
            failures += not ok
            print(f"  {name:28} {isa:13} top-1 {'same' if same_top1 else 'DIFFERENT'}, max rel diff {worst:.1e}"
                  f"{', bit-identical to ' + ', '.join(identical) if identical else ''}{'' if ok else '  FAILED'}")
    print(f"arm64 runtime: {len(manifest['models'])} models x {len(isas)} units, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
