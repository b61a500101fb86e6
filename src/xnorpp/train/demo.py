"""The demo behind ``make demo`` / ``xnorpp demo``: XNOR-Net++ on Fashion-MNIST on a small CPU.

:func:`run_demo` trains the ``fmnist-net`` with learned ``gamma-o-h-w`` scaling
(``fast-cpu`` recipe), then — if they fit the time budget, judged from the first
run's measured speed — the XNOR-Net (``xnor``) and float baselines, and prints a
table. Each step is a small function so later steps (export, packed inference)
can be appended: they receive the :class:`DemoResult` and add rows or lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrainConfig
from .loop import TrainResult, train

DEMO_MODEL = "fmnist-net"
DEMO_DATASET = "fashion-mnist"
DEMO_RECIPE = "fast-cpu"
DEMO_EPOCHS = 5
# gamma_init="alpha": Γ starts at XNOR-Net's α of the initial weights (see xnorpp.models.common); at 15 epochs on
# Fashion-MNIST, 5 seeds, +1.02 points over Γ = 1 and +0.56 over α·K (docs/results/comparison-fashion-mnist-
# converged). No augmentation: in 5 epochs it only slows fitting.
DEMO_OPTS = {"width": 32, "gamma_init": "alpha"}


@dataclass
class DemoRow:
    label: str
    result: TrainResult
    note: str = ""


@dataclass
class DemoResult:
    """Rows of the summary table, the run folders, and extra lines later steps add."""

    out_dir: str
    rows: list[DemoRow] = field(default_factory=list)
    extra_lines: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def main(self) -> TrainResult:
        return self.rows[0].result


def demo_config(out_dir: Path, name: str, **overrides) -> TrainConfig:
    base = dict(model=DEMO_MODEL, dataset=DEMO_DATASET, scaling="gamma-o-h-w", recipe=DEMO_RECIPE,
                epochs=DEMO_EPOCHS, model_opts=dict(DEMO_OPTS), augment=False, run_dir=str(out_dir / name))
    base.update(overrides)
    return TrainConfig(**base)


def format_table(demo: DemoResult) -> str:
    head = f"{'model':<34} {'test top-1':>10} {'top-5':>7} {'train time':>10} {'params':>10}  note"
    lines = [head, "-" * len(head)]
    for r in demo.rows:
        res = r.result
        lines.append(f"{r.label:<34} {res.test_top1:>9.2f}% {res.test_top5:>6.2f}% {res.train_time_s:>9.0f}s "
                     f"{res.params:>10,}  {r.note}")
    return "\n".join(lines)


def _fresh_dir(path: Path) -> None:
    """Demo runs start over: remove an older demo run of the same name (only xnorpp run files)."""
    if path.is_dir():
        for name in ("checkpoint.pt", "model.pt", "result.json", "metrics.csv", "config.json"):
            (path / name).unlink(missing_ok=True)
        tb = path / "tb"
        if tb.is_dir():
            for f in tb.iterdir():
                f.unlink()


def run_demo(out_dir: str = "runs/demo", data_root: str | None = None, epochs: int = DEMO_EPOCHS,
             budget_s: float = 540.0, baselines: bool = True, progress: bool = True,
             train_subset: int | None = None, export: bool = True) -> DemoResult:
    """Train and evaluate the demo model and, within ``budget_s`` seconds in all, its baselines.

    The main model always trains for ``epochs``; a baseline runs only when its
    estimated time (from the main run's speed; ``xnor`` costs about 1.3×, float
    about 0.8×) fits what is left, with fewer epochs if that is what fits
    (the table says so). ``train_subset`` trains on the first N images only (quick checks).
    With ``export``, the main model is then exported to ``model.xnor`` in its run folder and the
    packed model's accuracy, size and batch-1 speed are reported.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    demo = DemoResult(out_dir=str(out))

    def run(name, label, note="", **overrides):
        overrides.setdefault("epochs", epochs)
        cfg = demo_config(out, name, data_root=data_root, progress=progress, train_subset=train_subset,
                          **overrides)
        _fresh_dir(Path(cfg.run_dir))
        print(f"\n== {label}: {cfg.model}, scaling {cfg.scaling}, recipe {cfg.recipe}, {cfg.epochs} epochs ==",
              flush=True)
        res = train(cfg)
        demo.rows.append(DemoRow(label, res, note))
        return res

    main_start = time.perf_counter()
    run("xnorpp-gamma-o-h-w", "XNOR-Net++ (gamma-o-h-w)", "binary")
    per_epoch = (time.perf_counter() - main_start) / max(epochs, 1)  # training + evaluation + start-up
    if baselines:
        for name, label, model, scaling, cost in (("xnor", "XNOR-Net (xnor)", DEMO_MODEL, "xnor", 1.3),
                                                   ("float", "float (same network)", f"float-{DEMO_MODEL}", "none", 0.8)):
            left = budget_s - (time.perf_counter() - start)
            fit = int(left // (per_epoch * cost))
            if fit < 1:
                print(f"\nskipping the {label} run: about {per_epoch * cost:.0f} s per epoch, "
                      f"{max(left, 0):.0f} s of the {budget_s:.0f} s budget left", flush=True)
                continue
            n = min(epochs, fit)
            note = ("binary" if model == DEMO_MODEL else "real") + (f", only {n} of {epochs} epochs (time budget)"
                                                                       if n < epochs else "")
            run(name, label, note, model=model, scaling=scaling, epochs=n)
    if export:
        from ..export import export_and_measure, format_measurement
        from .checkpoint import load_model

        print("\n== exporting the XNOR-Net++ model to the packed runtime ==", flush=True)
        packed = export_and_measure(load_model(demo.main.run_dir), Path(demo.main.run_dir) / "model.xnor",
                                    dataset=DEMO_DATASET, data_root=data_root)
        demo.extra_lines.append(format_measurement(packed))
    demo.wall_s = time.perf_counter() - start
    return demo


def print_demo(demo: DemoResult) -> None:
    print("\n" + format_table(demo))
    for line in demo.extra_lines:
        print(line)
    print(f"\ndemo time {demo.wall_s / 60:.1f} min; run folders under {Path(demo.out_dir).resolve()}")
    print(f"main model: {Path(demo.main.run_dir).resolve()}")
