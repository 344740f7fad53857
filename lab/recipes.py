"""Training recipes on disk: the `recipe.json` beside every checkpoint of the toy model and of a selector.

A recipe is everything that determines a run (a dataclass with `to_dict`/`from_dict`). It is written at every
checkpoint, so `--resume` continues the run that made the directory, and the shipped assets say how they
were trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

RECIPE_FILE = "recipe.json"


class Recipe(Protocol):
    """A training recipe: JSON-ready through `to_dict`."""

    def to_dict(self) -> dict[str, Any]: ...


def write_recipe(directory: Path, recipe: Recipe) -> None:
    """Write `recipe` as `recipe.json` into `directory`."""
    (directory / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=1) + "\n")


def read_recipe(directory: Path) -> dict[str, Any]:
    """The recipe dict a checkpoint directory was trained with.

    Raises:
        FileNotFoundError: the directory has no recipe.json.
    """
    return json.loads((directory / RECIPE_FILE).read_text())


def recipe_saver(recipe: Recipe, then: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """An `on_save` hook for the training loop: write the recipe beside each checkpoint, then call `then`."""

    def on_save(directory: Path) -> None:
        write_recipe(directory, recipe)
        if then is not None:
            then(directory)

    return on_save
