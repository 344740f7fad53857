"""The lock pins every dependency that pyproject.toml asks for, directly or through another package."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[NormalizedName, str]:
    """name -> exact version from requirements.lock."""
    pins: dict[NormalizedName, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and " " not in line, f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    """The project's own requirements, the dev extra included, for this interpreter."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def closure(roots: list[Requirement]) -> set[NormalizedName]:
    """Every distribution the roots need, following the installed packages' own metadata."""
    seen: set[NormalizedName] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for spec in importlib.metadata.requires(req.name) or []:
            child = Requirement(spec)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in envs):
                todo.append((child, frozenset(child.extras)))
    return seen


def test_every_declared_dependency_is_locked_within_its_range():
    pins = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"
        )


def test_the_lock_holds_exactly_what_the_declared_dependencies_need():
    needed = closure(declared())
    pins = set(locked())
    assert not needed - pins, f"needed but not locked: {sorted(needed - pins)}"
    assert not pins - needed, f"locked but needed by nothing in pyproject.toml: {sorted(pins - needed)}"


def test_the_environment_is_the_lock():
    differ = {
        name: (importlib.metadata.version(name), version)
        for name, version in locked().items()
        if importlib.metadata.version(name) != version
    }
    assert not differ, f"installed vs locked (run scripts/install.sh): {differ}"
