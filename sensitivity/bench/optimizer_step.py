"""The optimizer-step benchmark: one AdamRAG step against torch Adam's, path by path.

``adamrag-sens bench optimizer`` wraps :func:`bench_optimizer` and prints :func:`results_table`.
Each row times one ``step()`` of
``torch.optim.Adam`` and of :class:`~sensitivity.optim.AdamRAG` on the same parameters and gradients,
with the same implementation path (for-each against for-each, fused against ``Adam(fused=True)``,
for-loop against for-loop), after warm-up, as the median over many steps; the two optimizers are
timed in alternating rounds so that a change in machine load hits both.

Memory-traffic accounting (bytes per parameter, float32, grads already computed): Adam reads the
parameter, its gradient, m and v and writes the parameter, m and v: 7 x 4 = 28 B. AdamRAG also reads
and writes the ravine buffer d: 9 x 4 = 36 B (ratio 1.29). Step counters and scalars are ignored.
"Floor" is that traffic divided by the copy bandwidth measured in the same run on a buffer of the
parameter set's size (bytes read + written per second); "GB/s" is the traffic divided by the
measured step time.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, Optional

import torch
from rich.table import Table

from sensitivity.bench.printout import fmt
from sensitivity.bench.timing import sync, time_calls
from sensitivity.errors import UserError, value_error
from sensitivity.optim.adamrag import AdamRAG
from sensitivity.train import resolve_device

__all__ = ["bench_optimizer", "parameter_shapes", "results_table", "SIZES", "PATHS", "NOTE"]

SIZES = ("tiny", "resnet18", "200m")
"""Parameter sets: ``tiny`` (tests), ``resnet18`` (CIFAR ResNet-18, 11.2M), ``200m`` (201M)."""

PATHS = ("foreach", "fused", "forloop")
BYTES_PER_PARAM = {"adam": 28, "adamrag": 36}
"""float32 bytes moved per parameter and step (see the module docstring)."""


def parameter_shapes(size: str) -> list[tuple[int, ...]]:
    """Shapes of the named parameter set.

    ``resnet18``: torchvision's ResNet-18 with 10 classes and the CIFAR stem (3x3 conv1, no max-pool),
    62 tensors, 11,173,962 parameters. ``200m``: 24 matrices (4096, 2048) and 24 vectors (2048,) as
    in a transformer's linear layers and norms, 201,375,744 parameters. ``tiny``: 5 small tensors.

    Raises:
        UserError: an unknown size.
    """
    if size == "tiny":
        return [(64, 32), (64,), (16, 8, 3, 3), (10, 7), (3,)]
    if size == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        return [tuple(p.shape) for p in model.parameters()]
    if size == "200m":
        return [(4096, 2048)] * 24 + [(2048,)] * 24
    raise UserError(f"unknown parameter set {size!r}; choose from {', '.join(SIZES)}")




def _copy_bandwidth(n_elements: int, device: torch.device, repeats: int = 10) -> float:
    """Bytes read + written per second by a float32 copy of ``n_elements`` (median of repeats)."""
    src = torch.ones(n_elements, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = time_calls(lambda: dst.copy_(src), repeats, device)
    return 2 * 4 * n_elements / statistics.median(times)


def _path_flags(path: str) -> dict[str, bool]:
    return {"foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}[path]


def _adamrag_path_available(path: str, device: torch.device) -> Optional[str]:
    """None when AdamRAG has this path on this device, else the reason it has not."""
    if path != "fused":
        return None
    if device.type != "cuda":
        return "AdamRAG's fused path is a Triton kernel for CUDA"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    return None


def bench_optimizer(
    device: str = "auto",
    sizes: Sequence[str] | None = None,
    paths: Sequence[str] = PATHS,
    steps: int = 50,
    warmup: int = 10,
    rounds: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time one optimizer step of torch Adam and AdamRAG, path by path.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (resolved as a
            sweep's ``--device``, :func:`sensitivity.train.resolve_device`).
        sizes: parameter sets from :data:`SIZES`; default ``resnet18`` on CPU, ``resnet18, 200m`` on CUDA.
        paths: implementation paths from :data:`PATHS`.
        steps: timed steps per optimizer and row (the median is reported).
        warmup: untimed steps per optimizer first (compilation, allocation, caches).
        rounds: the timed steps are split in this many alternating Adam / AdamRAG rounds.
        seed: seed of the random parameters and gradients.

    Returns:
        one dict per (size, path): ``size``, ``device``, ``path``, ``n_params``, ``n_tensors``,
        ``adam_ms`` and ``adamrag_ms`` (median milliseconds per step; None when a path is not
        available, with the reason in ``note``), ``ratio`` (AdamRAG / Adam), ``adam_floor_ms`` and
        ``adamrag_floor_ms`` (traffic / copy bandwidth), ``copy_gbps``, ``adam_gbps``, ``adamrag_gbps``
        (traffic / step time, 1e9 bytes per second).

    Raises:
        UserError: an unknown device, size or path, non-positive steps, or CUDA asked for but absent.
    """
    dev = resolve_device(device)
    if sizes is None:
        sizes = ("resnet18",) if dev.type == "cpu" else ("resnet18", "200m")
    if not paths:
        raise UserError(f"--paths names no path; give one or more of {', '.join(PATHS)}, e.g. --paths foreach,fused")
    if not sizes:
        raise UserError(f"--sizes names no size; give one or more of {', '.join(SIZES)}, e.g. --sizes tiny")
    for path in paths:
        if path not in PATHS:
            raise UserError(f"unknown path {path!r}; choose from {', '.join(PATHS)}")
    for flag, value, least, example in (("--steps", steps, 1, "50"), ("--warmup", warmup, 0, "10")):
        if value < least:
            raise value_error(flag, value, f"must be >= {least}", example)
    if rounds < 1:  # no flag: the command line always splits the steps in the default rounds
        raise UserError(f"rounds {rounds} must be >= 1")
    rounds = min(rounds, steps)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        shapes = parameter_shapes(size)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        params = [torch.randn(s, generator=gen).to(dev).requires_grad_() for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dev) * 1e-3
        n_params = sum(p.numel() for p in params)
        copy_bps = _copy_bandwidth(n_params, dev)
        for path in paths:
            row: dict[str, Any] = {
                "size": size,
                "device": str(dev),
                "path": path,
                "n_params": n_params,
                "n_tensors": len(params),
                "copy_gbps": copy_bps / 1e9,
                "adam_floor_ms": 1e3 * BYTES_PER_PARAM["adam"] * n_params / copy_bps,
                "adamrag_floor_ms": 1e3 * BYTES_PER_PARAM["adamrag"] * n_params / copy_bps,
                "note": "",
            }
            flags = _path_flags(path)
            adam = torch.optim.Adam(params, lr=1e-4, **flags)
            why_not = _adamrag_path_available(path, dev)
            rag = None if why_not else AdamRAG(params, lr=1e-4, **flags)
            for _ in range(warmup):
                adam.step()
            if rag is not None:
                try:  # a missing compiler or driver for Triton is reported in the row, not fatal
                    for _ in range(max(warmup, 1)):
                        rag.step()
                    sync(dev)
                except Exception as err:  # noqa: BLE001 - reported in the table and the JSON
                    why_not = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    rag = None
            row["note"] = why_not or ""
            sync(dev)
            times: dict[str, list[float]] = {"adam": [], "adamrag": []}
            per_round = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
            for k in per_round:
                times["adam"] += time_calls(adam.step, k, dev)
                if rag is not None:
                    times["adamrag"] += time_calls(rag.step, k, dev)
            for name in ("adam", "adamrag"):
                if times[name]:
                    sec = statistics.median(times[name])
                    row[f"{name}_ms"] = 1e3 * sec
                    row[f"{name}_gbps"] = BYTES_PER_PARAM[name] * n_params / sec / 1e9
                else:
                    row[f"{name}_ms"] = None
                    row[f"{name}_gbps"] = None
            row["ratio"] = row["adamrag_ms"] / row["adam_ms"] if row["adamrag_ms"] is not None else None
            rows.append(row)
            del adam, rag
        del params
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def results_table(rows: list[dict[str, Any]]) -> Table:
    """A rich table of :func:`bench_optimizer` rows (reasons for n/a cells go in the caption)."""
    device = rows[0]["device"] if rows else ""
    notes = sorted({f"{r['path']}: {r['note']}" for r in rows if r["note"]})
    table = Table(
        title=f"One optimizer step on {device}, median ms",
        caption="; ".join(notes) if notes else None,
    )
    for col in ("size", "path", "Adam", "AdamRAG", "ratio", "floor", "GB/s"):
        table.add_column(col, justify="left" if col in ("size", "path") else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            f"{r['size']} {r['n_params'] / 1e6:.1f}M",
            r["path"],
            fmt(r["adam_ms"]),
            fmt(r["adamrag_ms"]),
            fmt(r["ratio"], ".2f"),
            f"{fmt(r['adam_floor_ms'])}/{fmt(r['adamrag_floor_ms'])}",
            f"{fmt(r['adam_gbps'], '.0f')}/{fmt(r['adamrag_gbps'], '.0f')}",
        )
    return table


NOTE = (
    "ratio = AdamRAG / Adam on the same path. floor and GB/s: Adam/AdamRAG, counting 28 and 36 bytes per "
    "float32 parameter (Adam reads p, g, m, v and writes p, m, v; AdamRAG also reads and writes d); "
    "floor = bytes / copy bandwidth measured in this run."
)
"""How to read :func:`results_table` (printed under it)."""


