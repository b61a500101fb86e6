"""Train one architecture with each scaling under one recipe and compare them (paper's claims b, d).

``compare(out_dir, model=..., dataset=..., scalings=..., seeds=...)`` trains
``model`` once per scaling × seed with :func:`xnorpp.train.train`, each in its
own sub-folder ``<scaling>-seed<seed>`` of ``out_dir``, then measures the
approximation error of every trained binary model on held-out images
(:func:`~xnorpp.analysis.approx.approximation_error`, saved as ``approx.json``
in the run folder) and writes ``comparison.json`` and ``comparison.md``.

It resumes: a run whose ``result.json`` exists is skipped, an interrupted run
resumes from its checkpoint, a run folder made with other settings is refused.
The scaling ``"float"`` trains the ``float-<model>`` baseline.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..scaling import SCALINGS, get_scaling
from .runs import learned_count, read_json, write_atomic

FLOAT = "float"
PAIRED_REFERENCE = "xnor"  # XNOR-Net's α·K: what XNOR-Net++ claims to improve on
DEFAULT_SCALINGS = ("none", "xnor", "xnor-alpha", "gamma-o", "gamma-ohw", "gamma-o-hw", "gamma-o-h-w", FLOAT)
# Settings that define a run: a run folder made with other values is not silently reused.
_IDENTITY_KEYS = ("model", "dataset", "scaling", "seed", "epochs", "recipe", "batch_size", "lr", "model_opts",
                  "train_subset")


def run_name(scaling: str, seed: int) -> str:
    """Sub-folder of one run in a comparison folder."""
    return f"{scaling}-seed{seed}"


def check_scalings(scalings: Sequence[str]) -> tuple[str, ...]:
    """Validate scaling names (``float`` included); clear error naming the valid ones."""
    out = []
    for s in scalings:
        if s != FLOAT and s not in SCALINGS:
            raise ValueError(f"unknown scaling {s!r}; valid names: {', '.join(list(SCALINGS) + [FLOAT])}")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError("compare: give at least one scaling")
    return tuple(out)


@dataclass
class RunSummary:
    """One finished run of a comparison, read from its folder."""

    scaling: str
    seed: int
    run_dir: str
    test_top1: float
    best_top1: float | None
    train_time_s: float | None
    params: int | None
    learned_scale_params: int
    approx_relative_error: float | None  # mean over layers, the scheme the model was trained with
    approx_cosine: float | None
    approx_rescaled_error: float | None  # own scale after the best per-channel rescaling (its shape)
    oracle_relative_error: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Comparison:
    """All runs of a comparison, grouped by scaling (``rows()``), with its settings."""

    settings: dict
    runs: list[RunSummary] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # run folders not finished (partial comparisons)

    def rows(self) -> list[dict]:
        """One row per scaling: mean and spread over seeds."""
        out = []
        for scaling in self.settings["scalings"]:
            runs = [r for r in self.runs if r.scaling == scaling]
            if not runs:
                continue
            acc = [r.test_top1 for r in runs]

            def mean_of(attr):
                vals = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
                return statistics.fmean(vals) if vals else None
            out.append({
                "scaling": scaling, "seeds": [r.seed for r in runs], "n": len(runs),
                "test_top1_mean": statistics.fmean(acc),
                "test_top1_std": statistics.stdev(acc) if len(acc) > 1 else None,
                "test_top1_min": min(acc), "test_top1_max": max(acc),
                "learned_scale_params": runs[0].learned_scale_params, "params": runs[0].params,
                "train_time_s_mean": mean_of("train_time_s"),
                "approx_relative_error": mean_of("approx_relative_error"),
                "approx_cosine": mean_of("approx_cosine"),
                "approx_rescaled_error": mean_of("approx_rescaled_error"),
                "oracle_relative_error": mean_of("oracle_relative_error"),
            })
        return out

    def paired(self, reference: str = PAIRED_REFERENCE) -> list[dict]:
        """Each scaling against ``reference`` over the seeds both ran: a seed gives both the same initial
        latent weights and data order, so the per-seed difference removes the seed's own luck: one row per
        scaling, :func:`paired_difference` of its per-seed differences of test top-1 (points)."""
        ref = {r.seed: r.test_top1 for r in self.runs if r.scaling == reference}
        out = []
        for scaling in self.settings["scalings"]:
            diffs = [r.test_top1 - ref[r.seed] for r in self.runs if r.scaling == scaling and r.seed in ref]
            if scaling != reference and diffs:
                out.append({"scaling": scaling, "reference": reference, **paired_difference(diffs)})
        return out

    def to_dict(self) -> dict:
        return {"settings": self.settings, "rows": self.rows(), "paired": self.paired(),
                "runs": [r.to_dict() for r in self.runs], "missing": self.missing}

    def markdown(self) -> str:
        """The comparison table in Markdown, with the settings it was made with."""
        s = self.settings
        lines = [f"# Scaling comparison: {s['model']} on {s['dataset']}", "",
                 f"Recipe `{s.get('recipe')}`, {s.get('epochs')} epoch(s), seeds {s['seeds']}; "
                 f"approximation error on {s.get('approx_images')} held-out images.", "",
                 "| scaling | test top-1 (%) | runs | learned Γ params | params | train time (s) | "
                 "approx. rel. error | approx. cosine | rel. error, rescaled | oracle rel. error |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rows():
            acc = f"{r['test_top1_mean']:.2f}"
            if r["test_top1_std"] is not None:
                acc += f" ± {r['test_top1_std']:.2f}"
            lines.append("| " + " | ".join([
                f"`{r['scaling']}`", acc, str(r["n"]), f"{r['learned_scale_params']:,}",
                f"{r['params']:,}" if r["params"] is not None else "—",
                f"{r['train_time_s_mean']:.0f}" if r["train_time_s_mean"] is not None else "—",
                _f4(r["approx_relative_error"]), _f4(r["approx_cosine"]), _f4(r["approx_rescaled_error"]),
                _f4(r["oracle_relative_error"])]) + " |")
        lines += ["", "Accuracy: mean ± sample standard deviation over seeds (no ± with one seed). "
                  "Approximation error: mean over the binary layers of ‖I∗W − approx‖/‖I∗W‖ with the scale the "
                  "model was trained with (learned Γ for `gamma-*`, α for `xnor-alpha`, Kα for `xnor`, 1 for "
                  "`none`); cosine ignores the overall magnitude; *rescaled* = that scale after the best "
                  "per-output-channel rescaling (judges its spatial shape; equals the oracle for per-channel "
                  "scales); oracle = least-squares per-channel scale on the same binary products. Float models "
                  "have no binary layers (—)."]
        paired = self.paired()
        if paired:
            lines += ["", f"Paired by seed against `{PAIRED_REFERENCE}` (the same seed gives every scaling the same "
                      "initial latent weights and data order): test top-1 difference in points.", "",
                      "| scaling | seeds | mean difference | std | 95 % confidence interval | verdict |",
                      "|---|---:|---:|---:|---|---|"]
            for p in paired:
                ci = f"[{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]" if p["ci95"] else "—"
                std = f"{p['std']:.2f}" if p["std"] is not None else "—"
                lines.append(f"| `{p['scaling']}` | {p['n']} | {p['mean_difference']:+.2f} | {std} | {ci} | "
                             f"{p['verdict']} |")
        if self.missing:
            lines += ["", f"**Incomplete**: runs not finished: {', '.join(self.missing)}."]
        if s.get("train_options"):
            opts = ", ".join(f"{k}={v!r}" for k, v in s["train_options"].items())
            lines += ["", f"Training options: {opts}."]
        if s.get("command"):
            lines += ["", "Command:", "", "```", s["command"], "```"]
        if s.get("machine"):
            lines += ["", f"Machine: {s['machine']}"]
        return "\n".join(lines) + "\n"


def paired_difference(diffs: Sequence[float]) -> dict:
    """Per-seed differences (points of test top-1) summed up: their number ``n``, ``mean_difference``, sample
    ``std`` and 95 % confidence interval ``ci95`` of the mean (Student's t; None for one seed), and ``verdict``:
    whether the interval lies above 0, below 0, or contains it."""
    if not diffs:
        raise ValueError("paired_difference: no differences (no seed in common)")
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return {"n": 1, "mean_difference": mean, "std": None, "ci95": None, "verdict": "cannot tell (one seed)"}
    std = statistics.stdev(diffs)
    half = t_quantile_975(len(diffs) - 1) * std / len(diffs) ** 0.5
    low, high = mean - half, mean + half
    return {"n": len(diffs), "mean_difference": mean, "std": std, "ci95": [low, high],
            "verdict": "higher" if low > 0 else "lower" if high < 0 else "cannot tell"}


# Student's t quantile t(0.975, df) for df = 1..30 (beyond: the Cornish-Fisher series in 1/df, error < 1e-4).
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (two-sided 95 % intervals)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def _f4(v):
    return "—" if v is None else f"{v:.4f}"


def machine_description() -> str:
    """CPU model, core count, OS, Python and torch versions: for the results' provenance."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch
        torch_info = f"torch {torch.__version__}"
    except ImportError:
        torch_info = "no torch"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {torch_info}")


def learned_scale_count(model) -> int:
    """Number of learned scaling numbers (Γ factors) in a model."""
    from ..nn.layers import BinaryLayer

    return sum(getattr(m, f).numel() for m in model.modules() if isinstance(m, BinaryLayer)
               for f in m.scaling_spec.factors)


def _own_scheme(scaling: str) -> str:
    """The approximation scheme a model trained with ``scaling`` actually uses."""
    return "learned" if get_scaling(scaling).learned else scaling


def measure_run(run_dir: Path, *, images: int = 256, data=None) -> dict | None:
    """Approximation error of a finished run's model (``approx.json``, computed once); None for float."""
    from .approx import approximation_error, binary_layers

    path = Path(run_dir) / "approx.json"
    if path.exists():
        return read_json(path)
    from ..train import load_model

    model = load_model(run_dir)
    if not binary_layers(model):
        return None
    if data is None:
        data = held_out_data(run_dir)
    report = approximation_error(model, data, max_images=images)
    write_atomic(path, report.to_json())
    return report.to_dict()


def held_out_data(run_dir: Path):
    """The test split of the dataset a run was trained on (from its config.json)."""
    from ..data import get_dataset

    config = read_json(Path(run_dir) / "config.json")
    return get_dataset(config["dataset"], "test", data_root=config.get("data_root"))


def read_run(run_dir: Path, scaling: str, seed: int, approx: dict | None) -> RunSummary:
    """Collect the numbers of one finished run from its folder."""
    result = read_json(Path(run_dir) / "result.json")
    rel = cos = rescaled = oracle = None
    learned = 0
    if approx is not None and scaling != FLOAT:
        own = _own_scheme(scaling)
        rel = approx["mean_relative_error"].get(own)
        cos = approx["mean_cosine"].get(own)
        rescaled = approx.get("mean_rescaled_error", {}).get(own)
        oracle = approx["mean_relative_error"].get("oracle")
    if scaling != FLOAT and get_scaling(scaling).learned:
        learned = learned_count(run_dir)
    return RunSummary(scaling=scaling, seed=seed, run_dir=str(run_dir), test_top1=float(result["test_top1"]),
                      best_top1=result.get("best_top1"), train_time_s=result.get("train_time_s"),
                      params=result.get("params"), learned_scale_params=int(learned or 0),
                      approx_relative_error=rel, approx_cosine=cos, approx_rescaled_error=rescaled,
                      oracle_relative_error=oracle)


def _check_same_settings(run_dir: Path, wanted: dict) -> None:
    path = run_dir / "config.json"
    if not path.exists():
        return
    have = read_json(path)
    diff = {k: (have.get(k), wanted[k]) for k in _IDENTITY_KEYS if wanted.get(k) is not None and k in have
            and have.get(k) != wanted[k]}
    if diff:
        text = ", ".join(f"{k}: folder has {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"run folder {run_dir} was made with other settings ({text}); use a new comparison "
                         "folder or delete that run")


def compare(out_dir, *, model: str = "fmnist-net", dataset: str = "fashion-mnist",
            scalings: Sequence[str] = DEFAULT_SCALINGS, seeds: Sequence[int] = (0,), epochs: int | None = None,
            recipe: str | None = None, approx_images: int = 256, command: str | None = None,
            log: Callable[[str], None] | None = print, **train_options) -> Comparison:
    """Train ``model`` with each scaling × seed under one recipe and write the comparison table.

    ``out_dir`` gets one sub-folder per run plus ``comparison.json`` and
    ``comparison.md`` (rewritten after each run, so an interrupted comparison
    shows what is done). Finished runs (``result.json`` present) are skipped and
    interrupted ones resume. ``train_options`` go to :class:`xnorpp.train.TrainConfig`
    (``batch_size``, ``lr``, ``data_root``, ``workers``, ``device``, ``threads``, ``progress``, ...);
    ``log`` prints one line per run (``None``: silent).
    """
    from ..train import TrainConfig, train

    scalings = check_scalings(scalings)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("compare: give at least one seed")
    if model.startswith("float-"):
        raise ValueError(f"compare: give the binary model name (e.g. {model[len('float-'):]!r}); the scaling "
                         "'float' trains its float baseline")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"model": model, "dataset": dataset, "scalings": list(scalings), "seeds": list(seeds),
                "epochs": epochs, "recipe": recipe, "approx_images": approx_images,
                "train_options": train_options, "command": command or _python_call(
                    out_dir, model=model, dataset=dataset, scalings=list(scalings), seeds=list(seeds), epochs=epochs,
                    recipe=recipe, approx_images=approx_images, **train_options),
                "machine": machine_description()}
    previous = out / "comparison.json"
    if previous.exists():
        old = read_json(previous)["settings"]
        for key in ("model", "dataset", "epochs", "recipe"):
            if old.get(key) != settings[key]:
                raise ValueError(f"{out} holds a comparison with {key}={old.get(key)!r}, not {settings[key]!r}; "
                                 "use a new folder")
        # Keep runs asked earlier (e.g. other seeds) in the table.
        settings["scalings"] = list(dict.fromkeys(old.get("scalings", []) + list(scalings)))
        settings["seeds"] = sorted(set(old.get("seeds", [])) | set(seeds))
        asked = [tuple(r) for r in old.get("runs", [])]
    else:
        asked = []
    asked += [(sc, seed) for seed in seeds for sc in scalings if (sc, seed) not in asked]
    settings["runs"] = [list(r) for r in _ordered(asked, settings["scalings"])]
    comparison = Comparison(settings)
    for seed in seeds:
        for scaling in scalings:
            name = run_name(scaling, seed)
            run_dir = out / name
            if (run_dir / "result.json").exists():
                if log:
                    log(f"[compare] {name}: finished earlier, skipped")
            else:
                config = _train_config(TrainConfig, model, dataset, scaling, seed, epochs, recipe, run_dir,
                                       train_options)
                _check_same_settings(run_dir, config.to_dict())
                if log:
                    log(f"[compare] {name}: training{' (resuming)' if (run_dir / 'checkpoint.pt').exists() else ''}")
                start = time.perf_counter()
                train(config)
                if log:
                    log(f"[compare] {name}: done in {time.perf_counter() - start:.0f} s")
            approx = measure_run(run_dir, images=approx_images) if scaling != FLOAT else None
            comparison.runs.append(read_run(run_dir, scaling, seed, approx))
            _write(out, comparison)
    # Runs asked in an earlier call (other seeds or scalings) that finished belong to the table too.
    comparison = load_comparison(out, partial=True)
    _write(out, comparison)
    return comparison


def _python_call(out_dir, **kwargs) -> str:
    """How to repeat a comparison made from Python."""
    args = ", ".join([repr(str(out_dir))] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"python -c 'from xnorpp.analysis import compare; compare({args})'"


def _ordered(runs, scalings):
    """Runs sorted by the order of their scaling, then seed."""
    rank = {sc: i for i, sc in enumerate(scalings)}
    return sorted(runs, key=lambda r: (rank.get(r[0], len(rank)), r[1]))


def _train_config(TrainConfig, model, dataset, scaling, seed, epochs, recipe, run_dir, options):
    kwargs = dict(options)
    kwargs.update(model=f"float-{model}" if scaling == FLOAT else model, dataset=dataset, seed=seed,
                  run_dir=str(run_dir), resume=True)
    if scaling != FLOAT:
        kwargs["scaling"] = scaling
    if epochs is not None:
        kwargs["epochs"] = epochs
    if recipe is not None:
        kwargs["recipe"] = recipe
    return TrainConfig(**kwargs)


def _write(out: Path, comparison: Comparison) -> None:
    write_atomic(out / "comparison.json", json.dumps(comparison.to_dict(), indent=2))
    write_atomic(out / "comparison.md", comparison.markdown())


def load_comparison(path, *, partial: bool = False) -> Comparison:
    """Read a comparison folder; unfinished runs raise a clear error unless ``partial=True``."""
    out = Path(path)
    meta = out / "comparison.json"
    if not meta.exists():
        raise ValueError(f"{out} is not a comparison folder: it has no comparison.json (made by `xnorpp compare`)")
    settings = read_json(meta)["settings"]
    comparison = Comparison(settings)
    runs = settings.get("runs") or [(sc, seed) for seed in settings["seeds"] for sc in settings["scalings"]]
    for scaling, seed in runs:
        run_dir = out / run_name(scaling, seed)
        if not (run_dir / "result.json").exists():
            comparison.missing.append(run_name(scaling, seed))
            continue
        approx_path = run_dir / "approx.json"
        approx = read_json(approx_path) if approx_path.exists() else None
        comparison.runs.append(read_run(run_dir, scaling, seed, approx))
    if comparison.missing and not partial:
        raise ValueError(f"comparison {out} is incomplete: runs not finished: {', '.join(comparison.missing)}; "
                         "finish them by running the same `xnorpp compare` command again (it resumes), or "
                         "pass --partial to report what is done")
    return comparison


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


__all__ = ["compare", "Comparison", "RunSummary", "load_comparison", "DEFAULT_SCALINGS", "FLOAT", "run_name",
           "paired_difference",
           "machine_description", "measure_run", "learned_scale_count", "check_scalings", "mean_std"]
