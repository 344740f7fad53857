"""The shipped toy selector, and how the service loads a FlexSelect-Lite selector for its model."""

from __future__ import annotations

from pathlib import Path

from flexselect.adapters import VideoLLMAdapter
from flexselect.lite import LiteSelector, SelectorError, check_compatible

TOY_SELECTOR_DIR = Path(__file__).resolve().parent / "assets" / "toy-selector"


def resolve_selector(name: str | Path) -> Path:
    """`toy` is the selector shipped for the toy model; anything else is a selector directory."""
    return TOY_SELECTOR_DIR if str(name) == "toy" else Path(name)


def load_selector_for(name: str | Path | None, model: str, adapter: VideoLLMAdapter) -> LiteSelector:
    """Load selector `name` onto the adapter's device, in the model's dtype (a bf16 model gets a bf16
    selector: half the cache memory and the selector's own precision at scoring), and check it reads this
    model's vision features.

    `None` means the shipped toy selector when `model` is "toy".

    Raises:
        flexselect.lite.SelectorError: no selector named, a bad directory, or one for another family.
    """
    if name is None:
        if model != "toy":
            raise SelectorError("--scorer lite needs --selector DIR: a selector trained for this model")
        name = "toy"
    selector = LiteSelector.load(resolve_selector(name), device=adapter.device, dtype=adapter.model.dtype)
    check_compatible(selector, adapter)
    return selector
