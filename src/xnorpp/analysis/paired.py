"""Paired differences between arms of runs, epoch by epoch: does the ranking move with the budget?

An *arm* is one scaling's runs in one comparison folder (``xnorpp compare``), one run per seed; arms from
different folders can differ in their model options (Γ initialised to 1 in one folder, to α in another). Two
runs with the same seed start from the same latent weights and see the same data in the same order, so the
per-seed difference of test top-1 removes the seed's own luck. :func:`paired_epochs` reads every finished
run's ``metrics.csv`` and gives, for every epoch, each arm's mean and each arm's paired difference to the
reference arm with its 95 % interval: the statistic of ``xnorpp compare`` (:func:`paired_difference`) at every
epoch, not only at the last. :func:`write_paired` writes it as a page with two plots (``xnorpp paired``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .compare import FLOAT, check_scalings, paired_difference, run_name
from .runs import read_json, read_metrics, write_atomic

PAGE, DATA, CURVES_PNG, DIFFERENCES_PNG = "paired.md", "paired.json", "paired-curves.png", "paired-differences.png"
# Settings shown per arm: what may differ between the folders of one paired comparison.
_SETTING_KEYS = ("model", "dataset", "recipe", "epochs", "batch_size", "lr", "model_opts", "train_subset")


@dataclass(frozen=True)
class Arm:
    """One scaling's runs in one comparison folder, shown as ``label``."""

    label: str
    folder: Path
    scaling: str

    @classmethod
    def parse(cls, spec: str) -> "Arm":
        """``LABEL=FOLDER:SCALING`` or ``FOLDER:SCALING`` (then the label is the scaling). The label is what comes
        before the last ``=``, so it may hold one itself (``Γ=α=runs/cmp:gamma-o-h-w``)."""
        label, _, rest = spec.rpartition("=")  # no "=": label "" and rest the whole spec
        folder, sep, scaling = rest.rpartition(":")
        if not sep or not folder or not scaling:
            raise ValueError(f"arm {spec!r}: write LABEL=FOLDER:SCALING (e.g. 'Γ=α=runs/cmp-alpha:gamma-o-h-w') "
                             "or FOLDER:SCALING")
        check_scalings([scaling])
        return cls(label or scaling, Path(folder), scaling)

    def runs(self) -> dict[int, Path]:
        """Seed → finished run folder (one with result.json)."""
        if not self.folder.is_dir():
            raise ValueError(f"arm {self.label!r}: {self.folder} is not a folder (a comparison folder made by "
                             "`xnorpp compare`)")
        found = {}
        for run_dir in self.folder.iterdir():
            scaling, _, seed = run_dir.name.rpartition("-seed")
            if scaling == self.scaling and seed.isdigit() and run_dir.name == run_name(scaling, int(seed)) \
                    and (run_dir / "result.json").exists():
                found[int(seed)] = run_dir
        return dict(sorted(found.items()))


@dataclass
class PairedCurves:
    """Test top-1 per epoch of every run of every arm, and the paired differences to the reference arm."""

    arms: list[Arm]
    reference: str
    top1: dict[str, dict[int, list[float]]]  # arm label → seed → test top-1 after each epoch
    settings: dict[str, dict] = field(default_factory=dict)  # arm label → its runs' settings

    @property
    def epochs(self) -> int:
        return len(next(iter(next(iter(self.top1.values())).values())))

    def means(self, label: str) -> list[float]:
        runs = list(self.top1[label].values())
        return [statistics.fmean(r[e] for r in runs) for e in range(self.epochs)]

    def seed_differences(self, label: str, epoch: int) -> dict[int, float]:
        """Seed → ``label`` − reference after ``epoch`` (0-based), over the seeds both ran."""
        ref, arm = self.top1[self.reference], self.top1[label]
        return {s: arm[s][epoch] - ref[s][epoch] for s in arm if s in ref}

    def differences(self, label: str) -> list[dict]:
        """Per epoch: :func:`paired_difference` of ``label`` − reference over the seeds both ran."""
        return [paired_difference(list(self.seed_differences(label, e).values())) for e in range(self.epochs)]

    def to_dict(self) -> dict:
        return {"reference": self.reference, "epochs": self.epochs,
                "arms": [{"label": a.label, "folder": str(a.folder), "scaling": a.scaling,
                          "settings": self.settings[a.label], "test_top1": self.top1[a.label],
                          "paired_by_epoch": None if a.label == self.reference else self.differences(a.label)}
                         for a in self.arms]}

    def markdown(self, images: bool = True) -> str:
        last = self.epochs - 1
        lines = [f"# Paired by seed against `{self.reference}`, epoch by epoch", "",
                 "Test top-1 difference in points (this arm − the reference, per seed, then the mean), 95 % "
                 "interval of the mean difference (Student's t). Runs with the same seed start from the same "
                 "latent weights and see the same data order.", "",
                 "| arm | folder | scaling | model options | seeds | test top-1 after the last epoch (%) |",
                 "|---|---|---|---|---|---|"]
        for a in self.arms:
            runs = self.top1[a.label]
            per_seed = ", ".join(f"{runs[s][last]:.2f}" for s in runs)
            opts = ", ".join(f"{k}={v}" for k, v in (self.settings[a.label].get("model_opts") or {}).items())
            lines.append(f"| {a.label} | `{a.folder}` | `{a.scaling}` | {opts or '—'} "
                         f"| {', '.join(map(str, runs))} | {statistics.fmean(r[last] for r in runs.values()):.2f} "
                         f"({per_seed}) |")
        others = [a.label for a in self.arms if a.label != self.reference]
        lines += ["", f"After the last epoch ({self.epochs}):", "",
                  "| arm − reference | seeds | mean difference | std | 95 % interval | verdict | per seed |",
                  "|---|---:|---:|---:|---|---|---|"]
        for label in others:
            d = self.differences(label)[last]
            per_seed = ", ".join(f"{s}: {v:+.2f}" for s, v in self.seed_differences(label, last).items())
            lines.append(f"| {label} − {self.reference} | {d['n']} | {d['mean_difference']:+.2f} | {_std(d)} | "
                         f"{_interval(d)} | {d['verdict']} | {per_seed} |")
        lines += ["", "Every epoch (mean difference [95 % interval]):", "",
                  "| epoch | " + " | ".join(f"{label} − {self.reference}" for label in others) + " |",
                  "|---:|" + "---|" * len(others)]
        for e in range(self.epochs):
            cells = [f"{d['mean_difference']:+.2f} {_interval(d)}" for d in (self.differences(lb)[e] for lb in others)]
            lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
        if images:
            lines += ["", f"![test top-1 of every run]({CURVES_PNG})", "",
                      f"![paired differences by epoch]({DIFFERENCES_PNG})"]
        return "\n".join(lines) + "\n"


def _interval(d: dict) -> str:
    return f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d["ci95"] else "—"


def _std(d: dict) -> str:
    return f"{d['std']:.2f}" if d["std"] is not None else "—"


def paired_epochs(arms: Sequence[Arm], reference: str | None = None) -> PairedCurves:
    """Read the arms' finished runs; ``reference``: an arm's label (default: the first arm)."""
    arms = list(arms)
    if len(arms) < 2:
        raise ValueError("paired: give at least two arms (the reference and one to compare with it)")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"paired: arm labels must differ, got {labels}; name them with LABEL=FOLDER:SCALING")
    reference = labels[0] if reference is None else reference
    if reference not in labels:
        raise ValueError(f"paired: reference {reference!r} is not an arm; arms: {', '.join(labels)}")
    top1, settings, lengths = {}, {}, {}
    for a in arms:
        runs = a.runs()
        if not runs:
            raise ValueError(f"arm {a.label!r}: no finished run of {a.scaling!r} in {a.folder} (folders named "
                             f"{run_name(a.scaling, 0)}, ... with a result.json)")
        top1[a.label] = {seed: [row["test_top1"] for row in read_metrics(d)] for seed, d in runs.items()}
        config = read_json(next(iter(runs.values())) / "config.json")
        settings[a.label] = {k: config.get(k) for k in _SETTING_KEYS}
        lengths.update({f"{a.label} seed {s}": len(v) for s, v in top1[a.label].items()})
    if len(set(lengths.values())) != 1:
        raise ValueError("paired: the runs trained for different numbers of epochs: "
                         + ", ".join(f"{k}: {v}" for k, v in lengths.items()))
    if not any(s in top1[reference] for a in arms if a.label != reference for s in top1[a.label]):
        raise ValueError(f"paired: no seed is shared with the reference arm {reference!r}")
    return PairedCurves(arms, reference, top1, settings)


def write_paired(arms: Sequence[Arm], out_dir, reference: str | None = None) -> Path:
    """Write paired.md, paired.json and two plots into ``out_dir``; returns the page's path."""
    curves = paired_epochs(arms, reference)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plot(curves, out)
    write_atomic(out / DATA, json.dumps(curves.to_dict(), indent=1) + "\n")
    write_atomic(out / PAGE, curves.markdown())
    return out / PAGE


def _plot(curves: PairedCurves, out: Path) -> None:
    from .report import _plt

    plt = _plt()
    colors = {a.label: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(curves.arms)}
    epochs = list(range(1, curves.epochs + 1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in curves.arms:
        for seed, top1 in curves.top1[a.label].items():
            ax.plot(epochs, top1, color=colors[a.label], lw=0.7, alpha=0.45)
        ax.plot(epochs, curves.means(a.label), color=colors[a.label], lw=2.2, marker="o", ms=3,
                label=f"{a.label} (mean of {len(curves.top1[a.label])})")
    # From the third epoch on: the first two are far below the plateau and would flatten the rest.
    tail = [v for a in curves.arms for r in curves.top1[a.label].values() for v in r[min(2, curves.epochs - 1):]]
    ax.set_ylim(min(tail) - 0.3, max(tail) + 0.3)
    ax.set(xlabel="epoch", ylabel="test top-1 (%)", title="Every run (thin) and each arm's mean (thick)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / CURVES_PNG, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in curves.arms:
        if a.label == curves.reference or a.scaling == FLOAT:
            continue
        d = curves.differences(a.label)
        ax.plot(epochs, [x["mean_difference"] for x in d], color=colors[a.label], marker="o", ms=3,
                label=f"{a.label} − {curves.reference}")
        if all(x["ci95"] for x in d):
            ax.fill_between(epochs, [x["ci95"][0] for x in d], [x["ci95"][1] for x in d], color=colors[a.label],
                            alpha=0.18)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="epoch", ylabel="paired difference of test top-1 (points)",
           title="Paired differences by epoch, with 95 % intervals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / DIFFERENCES_PNG, dpi=110)
    plt.close(fig)
