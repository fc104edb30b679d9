"""What every benchmark's printout shares: the header line naming the versions and the machine a
measurement ran with, and how a measured number is written in a table cell."""

from __future__ import annotations

import math
import platform
import sys
from typing import Optional

import optuna
import torch

def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) named by its hardware: the GPU's name, and
    the CPU's for every device."""
    cpu = cpu_name()
    if device.startswith("cuda") or device == "auto":
        if torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            if index < torch.cuda.device_count():
                return f"{device} ({torch.cuda.get_device_name(index)}), CPU {cpu}"
    return f"cpu ({cpu})" if device in ("cpu", "auto") else f"{device}, CPU {cpu}"


def header(device: str) -> str:
    """The line that heads every benchmark's results: ``python 3.12.3, torch 2.5.1+cpu, optuna 5.0.0;
    device cpu (AMD EPYC 7763 64-Core Processor)``. Another version or processor can change a
    measured figure (and, at the edge of divergence, a result), so a measurement names them."""
    python = ".".join(map(str, sys.version_info[:3]))
    return (f"python {python}, torch {torch.__version__}, optuna {optuna.__version__}; "
            f"device {device_name(device)}")


def fmt(x: Optional[float], spec: str = ".3f") -> str:
    """A measured number for a table cell; ``n/a`` for None or NaN (not measured)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)
