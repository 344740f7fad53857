"""Model names the agent knows besides hub ids and directories (the bundled toy model)."""

from __future__ import annotations

from pathlib import Path

TOY_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "toy"


def resolve_model(name: str) -> str:
    """Map `toy` to the bundled checkpoint; anything else (hub id or directory) passes through."""
    if name == "toy":
        if not (TOY_MODEL_DIR / "config.json").is_file():
            raise FileNotFoundError(f"the bundled toy model is missing from {TOY_MODEL_DIR}")
        return str(TOY_MODEL_DIR)
    return name
