"""Recipes on disk: the recipe.json written beside each checkpoint, read back for --resume."""

from __future__ import annotations

from pathlib import Path

from lab.recipes import RECIPE_FILE, read_recipe, recipe_saver
from lab.selector.recipe import SelectorRecipe, saved_recipe


def test_the_saver_writes_the_recipe_then_calls_the_next_hook(tmp_path: Path):
    seen: list[bool] = []
    recipe = SelectorRecipe(preset="tiny", train_clips=12)
    recipe_saver(recipe, then=lambda d: seen.append((d / RECIPE_FILE).is_file()))(tmp_path)
    assert seen == [True]
    assert read_recipe(tmp_path)["train_clips"] == 12
    assert saved_recipe(tmp_path) == recipe  # tuples (betas, lengths) come back as tuples
