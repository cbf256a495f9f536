"""requirements.lock covers pyproject.toml: every direct dependency pinned at a version its range allows (a lock
left behind after a dependency was added or narrowed fails here, not on a user's fresh install)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, list[tuple[str, Marker | None]]]:
    """name -> [(version, marker)] of every `name==version ; marker` line of the lock."""
    out: dict[str, list] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;]+)\s*(?:;\s*(.+))?$", line)
        if m:
            out.setdefault(canonicalize_name(m[1]), []).append((m[2], Marker(m[3]) if m[3] else None))
    return out


def direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_every_direct_dependency_is_pinned_within_its_range():
    locked = pins()
    for req in direct():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        here = [v for v, marker in locked[name] if marker is None or marker.evaluate()]
        assert here, f"requirements.lock pins {req.name} for other platforms or Pythons only"
        assert all(req.specifier.contains(v, prereleases=True) for v in here), \
            f"requirements.lock pins {req.name}=={here} outside pyproject.toml's {req.specifier}: run `make lock`"


def test_torch_and_torchvision_come_from_the_registry():
    """torchvision's wheels name the one torch they were built with, so the resolver locks a matched pair; a
    CPU-only torch wheel found locally (a `+cpu` version) has no matching torchvision and must never be locked."""
    locked = pins()
    assert all("+" not in v for name in ("torch", "torchvision") for v, _ in locked[name])
