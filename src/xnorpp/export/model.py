"""Export a trained PyTorch model to one packed file (``.xnor``) for :mod:`xnorpp.runtime` (needs PyTorch).

The file (:mod:`xnorpp.packed`: safetensors, no pickle) holds binary weights at 1 bit each,
their α or Γ factors and bias, batch norm folded to a per-channel scale and shift, PReLU
slopes, the real layers in float32 (or float16 with ``real_dtype="float16"``) and the graph
as JSON, one node per layer. The model is traced with torch.fx (:mod:`.graph`); a layer the
runtime cannot run raises :class:`~.graph.ExportError` naming it.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import packed
from .graph import trace


def _load(model_or_checkpoint) -> tuple[nn.Module, dict]:
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint, {}
    path = Path(model_or_checkpoint)
    from ..train import load_model  # the training package knows how to rebuild its models

    model = load_model(path)
    return model, dict(getattr(model, "xnorpp_config", None) or {})


def build_graph(model_or_checkpoint, input_size: tuple[int, ...] | None = None, real_dtype: str = "float32", *,
                dataset: str | None = None, in_channels: int | None = None) -> tuple[packed.Graph, dict]:
    """The validated packed graph and tensors that :func:`export_model` writes (nothing is written)."""
    model, config = _load(model_or_checkpoint)
    dataset = dataset or config.get("dataset")
    info = None
    if dataset:
        from ..data.sources import dataset_info

        try:
            info = dataset_info(dataset)
        except ValueError:  # a data set this version does not know: record nothing about it
            pass
    from .. import __version__

    meta = {"producer": f"xnorpp {__version__}"}
    if info is not None:
        input_size = info.input_size if input_size is None else input_size
        meta["preprocess"] = {"dataset": dataset, "mean": list(info.mean), "std": list(info.std)}
        meta["num_classes"] = info.num_classes
        if info.classes:
            meta["classes"] = list(info.classes)
    was_training = model.training
    model.eval()
    try:
        graph, tensors = trace(model, input_size, in_channels=in_channels, real_dtype=real_dtype, meta=meta)
    finally:
        model.train(was_training)
    return graph, tensors


def export_model(model_or_checkpoint, path: str | os.PathLike, input_size: tuple[int, ...] | None = None,
                 real_dtype: str = "float32", *, dataset: str | None = None, in_channels: int | None = None) -> Path:
    """Write ``model_or_checkpoint`` (an ``nn.Module``, a checkpoint/model.pt or a run folder) to ``path``.

    ``input_size`` (h, w) is recorded in the file: the runtime validates every layer for it and
    refuses other sizes (the data set's size by default). A model that takes vectors (N, features), an
    MLP, has ``input_size=(features,)``; without it, a model whose first layer is a Linear reading the
    input takes vectors of its in_features. ``dataset`` records the input normalization of a known data
    set for ``xnorpp run``. ``in_channels`` is read from the first conv or linear layer; give it (or
    ``dataset``) for a model that flattens its input first. Returns the path written (atomically).
    """
    graph, tensors = build_graph(model_or_checkpoint, input_size, real_dtype, dataset=dataset,
                                 in_channels=in_channels)
    return packed.write(path, graph.to_json(), tensors)


def float_checkpoint_bytes(model: nn.Module) -> int:
    """Size of the model's float32 state_dict saved with torch.save (the float checkpoint)."""
    buf = io.BytesIO()
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}, buf)
    return buf.tell()


def _best_time(fn, repeat: int) -> float:
    """Best of ``repeat`` runs, after a pause that lets other libraries' spinning threads sleep."""
    time.sleep(0.3)
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(min(times))


def export_and_measure(model: nn.Module, path: str | os.PathLike, images: np.ndarray | torch.Tensor | None = None,
                       labels: np.ndarray | torch.Tensor | None = None, *, input_size=None,
                       dataset: str | None = None, data_root=None, batch_size: int = 256, repeat: int = 20) -> dict:
    """Export ``model`` to ``path`` and report the packed model's accuracy, size and speed.

    ``images`` are normalized float32 (N, C, H, W), ``labels`` integers; without them the test split
    of ``dataset`` (an in-memory data set) is loaded and normalized. Returns a dict with
    ``packed_top1``, ``torch_top1``, ``agreement`` (fraction of equal predictions),
    ``max_logit_rel_diff``, ``file_bytes``, ``float_checkpoint_bytes``, ``size_ratio``,
    ``batch1_ms_packed``, ``batch1_ms_torch`` (best of ``repeat``), ``speedup_batch1`` and ``isa``, ``threads``.
    """
    from .. import runtime

    if images is None:
        if dataset is None:
            raise ValueError("export_and_measure needs images and labels, or dataset=...")
        from ..data.sources import dataset_info, load_arrays, normalized

        info = dataset_info(dataset)
        raw, labels = load_arrays(dataset, "test", data_root)
        images = normalized(raw, info.mean, info.std)
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    out = export_model(model, path, input_size=input_size or tuple(x.shape[2:]), dataset=dataset)
    packed = runtime.load(out)
    model.eval()
    logits_p = packed.predict(x, batch_size)
    with torch.no_grad():
        logits_t = torch.cat([model(torch.from_numpy(x[i:i + batch_size]))
                              for i in range(0, len(x), batch_size)]).numpy()
    rel = np.abs(logits_p - logits_t).max(axis=1) / np.maximum(np.abs(logits_t).max(axis=1), 1e-12)
    one = np.ascontiguousarray(x[:1])
    with torch.no_grad():
        t_torch = _best_time(lambda: model(torch.from_numpy(one)), repeat)
    t_packed = _best_time(lambda: packed(one), repeat)
    file_bytes = os.path.getsize(out)
    float_bytes = float_checkpoint_bytes(model)
    return {
        "path": str(out), "images": int(len(x)),
        "packed_top1": float((logits_p.argmax(1) == y).mean()),
        "torch_top1": float((logits_t.argmax(1) == y).mean()),
        "agreement": float((logits_p.argmax(1) == logits_t.argmax(1)).mean()),
        "max_logit_rel_diff": float(rel.max()), "median_logit_rel_diff": float(np.median(rel)),
        "file_bytes": int(file_bytes), "float_checkpoint_bytes": int(float_bytes),
        "size_ratio": float(float_bytes / file_bytes),
        "batch1_ms_packed": 1e3 * t_packed, "batch1_ms_torch": 1e3 * t_torch,
        "speedup_batch1": t_torch / t_packed, "isa": packed.isa, "threads": runtime.num_threads(),
        "torch_threads": torch.get_num_threads(),
    }


def format_measurement(r: dict) -> str:
    """One paragraph for logs and demos from an :func:`export_and_measure` result."""
    return (f"packed model {r['path']}: {r['file_bytes'] / 1024:.0f} KiB, {r['size_ratio']:.1f}x smaller than the "
            f"float checkpoint; top-1 {100 * r['packed_top1']:.2f}% packed vs {100 * r['torch_top1']:.2f}% in "
            f"PyTorch ({100 * r['agreement']:.2f}% same predictions, logits within "
            f"{r['max_logit_rel_diff']:.1e} relative) on {r['images']} images; batch 1: "
            f"{r['batch1_ms_packed']:.2f} ms packed ({r['isa']}, {r['threads']} threads) vs "
            f"{r['batch1_ms_torch']:.2f} ms PyTorch = {r['speedup_batch1']:.1f}x")
