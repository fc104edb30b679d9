"""The locks that `make demo`, `make test` and CI install from agree with pyproject.toml's ranges.

A dependency added to (or narrowed in) pyproject.toml without `make lock` would leave the lock
installing a version the package does not accept, or none; a pin with a local build label
(``torch==2.14.1+cpu``) exists for one platform only and would make the lock fail elsewhere.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"lock.txt": (), "lock-dev.txt": ("dev",)}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:;\s*(.*?))?\s*\\$")


def read_lock(path: Path) -> dict[str, tuple[Version, str | None, int]]:
    """``{name: (version, marker or None, number of hashes)}`` of a uv/pip-compile lock with hashes."""
    pins: dict[str, tuple[Version, str | None, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = (Version(match[2]), match[3], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, marker, n = pins[current]
            pins[current] = (version, marker, n + 1)
    return pins


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_dependency_is_pinned_inside_its_range(lock):
    pins = read_lock(ROOT / "requirements" / lock)
    for req in declared(LOCKS[lock]):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in {lock}: run `make lock`"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), \
            f"{lock} pins {req.name}=={version} outside pyproject.toml's {req.specifier}: run `make lock`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_no_single_platform_build_and_hashes_every_pin(lock):
    pins = read_lock(ROOT / "requirements" / lock)
    assert len(pins) > 20  # the whole tree, not only the direct dependencies
    for name, (version, marker, hashes) in pins.items():
        assert version.local is None, f"{name}=={version} is a local build, which exists for one platform only"
        assert hashes >= 1, f"{name} has no --hash line: pip's --require-hashes would refuse the lock"
        if marker:
            Marker(marker)  # parses


def test_cuda_libraries_are_pinned_for_linux_only():
    # torch's CUDA wheels need them on Linux; a lock that pinned them unconditionally could not be
    # installed on macOS or Windows
    pins = read_lock(ROOT / "requirements" / "lock-dev.txt")
    cuda = {name: marker for name, (_, marker, _) in pins.items() if name.startswith("nvidia-")}
    assert cuda, "torch's Linux wheels depend on nvidia-* packages; the universal lock should list them"
    for name, marker in cuda.items():
        assert marker and "linux" in marker, f"{name} is pinned without a Linux-only marker"


def test_the_dev_lock_holds_the_runtime_lock():
    runtime, dev = read_lock(ROOT / "requirements" / "lock.txt"), read_lock(ROOT / "requirements" / "lock-dev.txt")
    for name, (version, _, _) in runtime.items():
        assert dev[name][0] == version, f"{name}: lock.txt pins {version}, lock-dev.txt {dev[name][0]}"
