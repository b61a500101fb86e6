"""A report page with plots for a training run or a scaling comparison.

``report(path)`` accepts either a comparison folder (made by
:func:`xnorpp.analysis.compare`, holds ``comparison.json``) or a single run
folder (made by :func:`xnorpp.train.train`, holds ``config.json`` and
``metrics.csv``) and writes ``report.md`` (or ``report.html``) with PNG plots
(matplotlib, headless) into ``<path>/report/``:

* ``curves.png`` — test top-1 and training loss per epoch, one line per scaling;
* ``accuracy.png`` — test top-1 per scaling (bar = mean over seeds, whiskers =
  min..max, dots = seeds) — comparison only;
* ``approx_error.png`` — per-layer relative error and cosine similarity of each
  model's own scale against the real convolution, with the oracle (dashed);
* ``approx_schemes.png`` — for one model, every scheme per layer (none, α, Kα,
  learned Γ, oracle), as is and after the best per-channel rescaling;
* ``factors-<run>.png`` — the learned factors of each ``gamma-*`` model: α over
  output channels, the spatial factor drawn as an image (β⊗γ, β, or Γ averaged
  over channels), and its profiles over rows (β) and columns (γ).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from .approx import SCHEME_TITLES, SCHEMES
from .compare import FLOAT, Comparison, load_comparison, run_name
from .runs import learned_factors, read_metrics, write_atomic

FORMATS = ("md", "html")
PLOT_FILES = ("curves.png", "accuracy.png", "approx_error.png", "approx_schemes.png", "factors-*.png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_run(run_dir: Path, partial: bool) -> None:
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is neither a comparison folder (comparison.json) nor a training run folder "
                         "(config.json + metrics.csv)")
    if not (run_dir / "result.json").exists() and not partial:
        done = ""
        try:
            rows = read_metrics(run_dir)
            epochs = json.loads((run_dir / "config.json").read_text()).get("epochs")
            done = f" ({len(rows)} of {epochs} epochs done)"
        except (ValueError, OSError, json.JSONDecodeError):
            pass
        raise ValueError(f"run folder {run_dir} is incomplete: no result.json{done}; finish it with "
                         f"`xnorpp train --resume {run_dir}`, or pass --partial to report what is done")


def _runs_of(path: Path, partial: bool):
    """(title, kind, runs) where runs = list of (label, scaling, run_dir)."""
    if (path / "comparison.json").exists():
        comparison = load_comparison(path, partial=partial)
        runs = [(run_name(r.scaling, r.seed), r.scaling, Path(r.run_dir)) for r in comparison.runs]
        if not runs:
            raise ValueError(f"comparison {path} has no finished run yet")
        return comparison, runs
    _check_run(path, partial)
    config = json.loads((path / "config.json").read_text())
    scaling = FLOAT if str(config.get("model", "")).startswith("float-") else config.get("scaling", "?")
    return None, [(path.name, scaling, path)]


def _colors(scalings):
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(dict.fromkeys(scalings))}


def plot_curves(runs, out: Path) -> Path:
    plt = _plt()
    colors = _colors([s for _, s, _ in runs])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labelled = set()
    last_epoch = 1
    for label, scaling, run_dir in runs:
        rows = read_metrics(run_dir)
        if not rows:
            continue
        epochs = [r["epoch"] for r in rows]
        last_epoch = max(last_epoch, max(epochs))
        kw = dict(color=colors[scaling], marker="o", ms=3, label=None if scaling in labelled else scaling)
        labelled.add(scaling)
        axes[0].plot(epochs, [r["test_top1"] for r in rows], **kw)
        axes[1].plot(epochs, [r["train_loss"] for r in rows], **kw)
    axes[0].set(xlabel="epoch", ylabel="test top-1 (%)", title="Test accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        if last_epoch <= 20:
            ax.set_xticks(range(1, last_epoch + 1))
        if last_epoch == 1:
            ax.set_xlim(0.5, 1.5)
            ax.set_xlabel("epoch (one epoch per run: end-of-epoch values, no curve)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(comparison: Comparison, out: Path) -> Path:
    plt = _plt()
    rows = comparison.rows()
    colors = _colors([r["scaling"] for r in rows])
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(rows) + 2), 4))
    xs = range(len(rows))
    means = [r["test_top1_mean"] for r in rows]
    ax.bar(xs, means, color=[colors[r["scaling"]] for r in rows], alpha=0.8)
    for x, r in zip(xs, rows):
        accs = [run.test_top1 for run in comparison.runs if run.scaling == r["scaling"]]
        ax.vlines(x, min(accs), max(accs), color="black", lw=1.5)
        ax.plot([x] * len(accs), accs, "k.", ms=5)
        ax.text(x, r["test_top1_max"], f"{r['test_top1_mean']:.2f}", ha="center", va="bottom", fontsize=8)
    lo = min(min(run.test_top1 for run in comparison.runs) - 2, min(means) - 2)
    ax.set_ylim(max(0, lo), min(100, max(r["test_top1_max"] for r in rows) + 2))
    ax.set_xticks(list(xs), [r["scaling"] for r in rows], rotation=25, ha="right")
    n = ", ".join(sorted({str(r["n"]) for r in rows}))
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Test accuracy per scaling ({n} seed(s); bar = mean, line = min..max)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _own_scheme(scaling: str) -> str:
    from ..scaling import get_scaling

    return "learned" if get_scaling(scaling).learned else scaling


def plot_approx(approx_by_run: dict, out: Path) -> Path | None:
    """Per-layer relative error and cosine of each model's own scale (solid) and the oracle (dashed).

    ``approx_by_run``: {label: (scaling, approx dict)}; runs of the same scaling (seeds) are averaged.
    """
    if not approx_by_run:
        return None
    import numpy as np

    plt = _plt()
    by_scaling: dict[str, list[dict]] = {}
    for scaling, approx in approx_by_run.values():
        by_scaling.setdefault(scaling, []).append(approx)
    colors = _colors(list(by_scaling))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    names = None
    values = []
    for scaling, approxes in by_scaling.items():
        layers = approxes[0]["layers"]
        names = names or [r["name"] for r in layers]
        own = _own_scheme(scaling)
        for ax, metric in zip(axes, ("relative_error", "cosine")):
            def per_layer(scheme):
                return np.nanmean([[_nan(r[metric].get(scheme)) for r in a["layers"]] for a in approxes], axis=0)
            mine = per_layer(own)
            if metric == "relative_error":
                values.extend(v for v in mine if v == v)
            n = f", {len(approxes)} seeds" if len(approxes) > 1 else ""
            ax.plot(range(len(mine)), mine, marker="o", ms=3, color=colors[scaling],
                    label=f"{scaling} ({SCHEME_TITLES[own]}{n})")
            ax.plot(range(len(mine)), per_layer("oracle"), ls="--", lw=0.8, marker="x", ms=3, color=colors[scaling])
    for ax, title in zip(axes, ("relative error ‖I∗W − approx‖/‖I∗W‖ (lower is better)",
                                "cosine similarity (higher is better)")):
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    if values and max(values) > 20 * max(min(values), 1e-12):
        axes[0].set_yscale("log")  # a badly scaled layer would flatten all others
    axes[0].set_ylabel("solid: model's own scale\ndashed: per-channel oracle", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, 0.05 + 0.05 * rows, 1, 1))
    path = out / "approx_error.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_schemes(label: str, approx: dict, out: Path) -> Path:
    """Every scheme's per-layer error for one model (grouped bars): as is, and after per-channel rescaling."""
    plt = _plt()
    layers = approx["layers"]
    schemes = [s for s in SCHEMES if any(r["relative_error"].get(s) is not None for r in layers)]
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 1.6 * len(layers) + 4), 4.4))
    width = 0.8 / len(schemes)
    for ax, metric, title in (
            (axes[0], "relative_error", "relative error of each scale as it is"),
            (axes[1], "rescaled_error", "after the best per-channel rescaling (shape only)")):
        values = []
        for i, s in enumerate(schemes):
            xs = [j + (i - (len(schemes) - 1) / 2) * width for j in range(len(layers))]
            ys = [_nan(r.get(metric, {}).get(s)) for r in layers]
            values += [v for v in ys if v == v]
            ax.bar(xs, ys, width, label=SCHEME_TITLES[s])
        if values and max(values) > 20 * max(min(values), 1e-12):
            ax.set_yscale("log")  # 'none' is off by the whole scale: keep the others readable
        elif values and metric == "rescaled_error":  # close values: zoom in
            lo, hi = min(values), max(values)
            ax.set_ylim(max(0.0, lo - 0.25 * (hi - lo) - 0.01), hi + 0.1 * (hi - lo) + 0.01)
            title += " — axis zoomed"
        ax.set_xticks(range(len(layers)), [r["name"] for r in layers], rotation=45, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("‖I∗W − approx‖ / ‖I∗W‖")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"{label}: every scale on the same binary products ({approx['images']} held-out images)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = out / "approx_schemes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _nan(v):
    return math.nan if v is None else v


def plot_gamma(label: str, scaling: str, factors: dict, out: Path) -> Path | None:
    """The learned factors of one model: α per channel, spatial factor as image, row/column profiles."""
    import numpy as np

    if not factors:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    def index_ticks(axis, n):  # indices are integers; a few: all of them
        if n <= 16:
            axis.set_ticks(range(n))
        else:
            axis.set_major_locator(MaxNLocator(integer=True))

    names = list(factors)
    spatial = any(set(f) - {"scale_channel"} for f in factors.values())
    ncols = 3 if spatial else 1
    width = 4.2 * ncols if ncols > 1 else 8.0  # one column: wide enough for the title
    fig, axes = plt.subplots(len(names), ncols, figsize=(width, 2.3 * len(names) + 0.6), squeeze=False)
    for row, name in enumerate(names):
        f = factors[name]
        if "scale_full" in f:  # Γ ∈ R^{o×h×w}: per-channel mean, spatial mean image
            full = f["scale_full"]
            alpha = full.mean(axis=(1, 2))
            image = full.mean(axis=0)
            alpha_label, image_label = "mean over (h,w) of Γ", "Γ averaged over channels"
        else:
            alpha = f.get("scale_channel")
            alpha_label = "α (per output channel)"
            if "scale_spatial" in f:
                image, image_label = f["scale_spatial"], "β (h×w)"
            elif "scale_height" in f:
                image, image_label = np.outer(f["scale_height"], f["scale_width"]), "β ⊗ γ (rows × columns)"
            else:
                image = None
        ax = axes[row, 0]
        if alpha is not None:
            ax.plot(alpha, lw=0.8)
            ax.axhline(1.0, color="gray", lw=0.5, ls=":")
        ax.set_title(f"{name}: {alpha_label}", fontsize=8)
        ax.set_xlabel("output channel", fontsize=7)
        if alpha is not None:
            index_ticks(ax.xaxis, len(alpha))
        ax.tick_params(labelsize=7)
        if ncols == 1:
            continue
        ax = axes[row, 1]
        if image is not None:
            im = ax.imshow(image, cmap="viridis")
            fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_title(image_label, fontsize=8)
            ax.set_xlabel("output column", fontsize=7)
            ax.set_ylabel("output row", fontsize=7)
            index_ticks(ax.xaxis, image.shape[1])
            index_ticks(ax.yaxis, image.shape[0])
        ax.tick_params(labelsize=7)
        ax = axes[row, 2]
        if "scale_height" in f:
            rows_, cols_ = f["scale_height"], f["scale_width"]
            ax.set_title("β over rows, γ over columns", fontsize=8)
        elif image is not None:
            rows_, cols_ = image.mean(axis=1), image.mean(axis=0)
            ax.set_title("row / column means of the image", fontsize=8)
        else:
            rows_ = cols_ = None
        if rows_ is not None:
            ax.plot(rows_, marker=".", label="rows (β)")
            ax.plot(cols_, marker=".", label="columns (γ)")
            ax.legend(fontsize=6)
            ax.set_xlabel("row / column index", fontsize=7)
            index_ticks(ax.xaxis, max(len(rows_), len(cols_)))
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Learned scaling factors of {label} ({scaling}); dotted line: initial value 1", fontsize=10)
    fig.tight_layout()
    path = out / f"factors-{label}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(path, *, out_dir=None, fmt: str = "md", partial: bool = False, approx_images: int = 256,
           compute_approx: bool = True) -> Path:
    """Write a report page with plots for a comparison folder or a run folder; returns the page's path.

    ``fmt``: ``"md"`` (Markdown) or ``"html"``. ``partial=True`` reports the
    finished part of an incomplete comparison or run instead of refusing it.
    Missing ``approx.json`` files are computed (on ``approx_images`` test images
    of the run's dataset) when ``compute_approx`` and the dataset is available.
    """
    if fmt not in FORMATS:
        raise ValueError(f"report: unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"report: {path} is not a folder; give a run folder (from `xnorpp train`) or a "
                         "comparison folder (from `xnorpp compare`)")
    comparison, runs = _runs_of(path, partial)
    out = Path(out_dir) if out_dir else path / "report"
    out.mkdir(parents=True, exist_ok=True)
    for pattern in PLOT_FILES:  # plots of an earlier report that may not be redrawn
        for stale in out.glob(pattern):
            stale.unlink()
    notes: list[str] = []
    sections: list[tuple[str, str | None, Path | None]] = []  # (title, text, image)

    if comparison is not None:
        s = comparison.settings
        title = f"Scaling comparison: {s['model']} on {s['dataset']}"
        sections.append(("Results", comparison.markdown().split("\n", 2)[2], None))
        sections.append(("Test accuracy", None, plot_accuracy(comparison, out)))
    else:
        config = json.loads((path / "config.json").read_text())
        title = f"Training run {path.name}: {config.get('model')} ({runs[0][1]}) on {config.get('dataset')}"
        result_path = path / "result.json"
        if result_path.exists():
            result = json.loads(result_path.read_text())
            keys = [k for k in ("test_top1", "test_top5", "best_top1", "train_time_s", "params", "epochs")
                    if k in result]
            table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n| " + " | ".join(
                f"{result[k]:.2f}" if isinstance(result[k], float) else str(result[k]) for k in keys) + " |"
            sections.append(("Result", table, None))
        else:
            notes.append("the run is not finished (no result.json): numbers are from the last completed epoch")
    sections.append(("Training curves", None, plot_curves(runs, out)))

    approx_by_run = {}
    for label, scaling, run_dir in runs:
        if scaling == FLOAT:
            continue
        approx = _approx_of(run_dir, compute_approx, approx_images, notes)
        if approx is not None:
            approx_by_run[label] = (scaling, approx)
    if approx_by_run:
        sections.append(("Every scale on every model", _schemes_table(approx_by_run), None))
        sections.append(("Approximation error per layer", "Each model's own scale (solid) against the real "
                         "convolution I∗W on held-out images; dashed: the least-squares per-channel oracle on the "
                         "same binary products.", plot_approx(approx_by_run, out)))
        label, (scaling, approx) = _pick_for_schemes(approx_by_run)
        sections.append((f"All scales on one model ({label})", None, plot_schemes(label, approx, out)))

    drawn = set()
    for label, scaling, run_dir in runs:  # one model per scaling (its first seed)
        if scaling == FLOAT or not _is_learned(scaling) or scaling in drawn:
            continue
        drawn.add(scaling)
        image = plot_gamma(label, scaling, learned_factors(run_dir), out)
        if image is not None:
            sections.append((f"Learned factors: {label}", None, image))

    page = out / f"report.{fmt}"
    write_atomic(page, _render_page(title, sections, notes, fmt, out))
    return page


def _schemes_table(approx_by_run: dict) -> str:
    """Markdown: per model, the mean over layers of each scheme's error (as is / after rescaling)."""
    head = "| model | " + " | ".join(SCHEME_TITLES[s] for s in SCHEMES) + " |"
    lines = ["Mean over the binary layers of the relative error ‖I∗W − approx‖/‖I∗W‖ of each scale, evaluated on "
             "the same binary products of each trained model; in brackets: after the best per-channel rescaling "
             "(the scale's shape only). Lower is better.", "", head, "|---|" + "---:|" * len(SCHEMES)]
    for label, (scaling, approx) in approx_by_run.items():
        rel, res = approx["mean_relative_error"], approx.get("mean_rescaled_error", {})
        cells = ["—" if rel.get(s) is None else f"{rel[s]:.3f} ({res.get(s, float('nan')):.3f})" for s in SCHEMES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _is_learned(scaling: str) -> bool:
    from ..scaling import get_scaling

    return get_scaling(scaling).learned


def _pick_for_schemes(approx_by_run: dict):
    """The model shown with all schemes: the paper's best shape if present, else the first."""
    for label, value in approx_by_run.items():
        if value[0] == "gamma-o-h-w":
            return label, value
    return next(iter(approx_by_run.items()))


def _approx_of(run_dir: Path, compute: bool, images: int, notes: list[str]) -> dict | None:
    path = run_dir / "approx.json"
    if path.exists():
        return json.loads(path.read_text())
    if not compute or not ((run_dir / "model.pt").exists() or (run_dir / "checkpoint.pt").exists()):
        return None
    from .compare import measure_run

    try:
        return measure_run(run_dir, images=images)
    except (ValueError, OSError, RuntimeError) as err:
        notes.append(f"approximation error of {run_dir.name} not computed: {err}")
        return None


def _render_page(title: str, sections, notes, fmt: str, out: Path) -> str:
    if fmt == "md":
        lines = [f"# {title}", ""]
        for note in notes:
            lines += [f"> Note: {note}", ""]
        for heading, text, image in sections:
            lines += [f"## {heading}", ""]
            if text:
                lines += [text.strip(), ""]
            if image is not None:
                lines += [f"![{heading}]({image.relative_to(out).as_posix()})", ""]
        return "\n".join(lines)
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p><em>Note: {html.escape(n)}</em></p>" for n in notes]
    for heading, text, image in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            body.append(_markdown_to_html(text))
        if image is not None:
            body.append(f'<img src="{html.escape(image.relative_to(out).as_posix())}" alt="{html.escape(heading)}" '
                        'style="max-width:100%">')
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _markdown_to_html(text: str) -> str:
    """Just enough Markdown for our own tables, paragraphs and code blocks."""
    out, table, code = [], [], None
    for line in text.strip().splitlines() + [""]:
        if code is not None:
            if line.startswith("```"):
                out.append("<pre>" + html.escape("\n".join(code)) + "</pre>")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            code = []
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        if table:
            rows = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table[0]) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in r) + "</tr>" for r in table[1:]]
            out.append("<table>" + "".join(rows) + "</table>")
            table = []
        if line.strip():
            out.append(f"<p>{html.escape(line.replace('**', '').replace('`', ''))}</p>")
    return "\n".join(out)
