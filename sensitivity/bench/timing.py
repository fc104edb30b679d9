"""How the benchmarks time things: device calls (CUDA events, or the wall clock on the CPU) and whole
child processes (wall and CPU seconds). One helper for every benchmark of :mod:`sensitivity.bench`."""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch

from sensitivity.errors import UserError


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (CUDA; nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(call: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Seconds of ``n`` single calls of ``call``, each from an idle device to its completion
    (CUDA events on a GPU, ``time.perf_counter`` on the CPU)."""
    out = []
    if device.type == "cuda":
        for _ in range(n):
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
    return out


def time_rate(run: Callable[[], int], device: torch.device) -> float:
    """Items per second of ``run``, which returns how many items it processed (device synchronised
    before and after, wall clock)."""
    sync(device)
    start = time.perf_counter()
    items = run()
    sync(device)
    return items / (time.perf_counter() - start)


def run_process(cmd: list[str], log_path: str, env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``cmd`` to its end, its output to ``log_path``; (wall-clock start as epoch seconds, wall
    seconds, CPU seconds: user + system of the process and its children).

    Raises:
        UserError: the command failed (the end of its output is in the message).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    epoch_start, start = time.time(), time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0:
        with open(log_path) as fh:
            tail = " | ".join(line.strip() for line in fh.read().strip().splitlines()[-3:])
        raise UserError(f"benchmarked command failed with exit code {code}: {tail}")
    return epoch_start, wall, cpu


def time_in_process(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: user + system of all its threads) of one call of
    ``call``, without synchronising a device (the call's own result forces its work)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu
