"""Print how the packages installed in this environment differ from a lock file.

`make test-latest` runs it after installing the newest releases pyproject.toml's ranges allow, so
its log says which new upstream versions the test run below it is about. Usage::

    python scripts/lock_drift.py requirements/lock-dev.txt

Exit status 0 always: a drift is information, not a failure (the tests that follow decide that).
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*\\?$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a pip requirements lock
    whose environment marker (``; sys_platform == 'linux'``) holds here."""
    from packaging.markers import Marker  # installed with matplotlib, which the lock holds

    pins = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match and (not match[3] or Marker(match[3]).evaluate()):
            pins[_canonical(match[1])] = match[2]
    return pins


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/lock_drift.py LOCKFILE", file=sys.stderr)
        return 2
    locked = locked_versions(Path(argv[0]))
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    rows = [(name, locked[name], installed.get(name, "(not installed)"))
            for name in sorted(locked) if installed.get(name) != locked[name]]
    py = ".".join(map(str, sys.version_info[:3]))
    if not rows:
        print(f"newest releases = the lock ({argv[0]}), python {py}")
        return 0
    print(f"newest releases against the lock ({argv[0]}), python {py}:")
    width = max(len(r[0]) for r in rows)
    for name, old, new in rows:
        print(f"  {name:<{width}}  {old} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
