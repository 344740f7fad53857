"""A checkpoint's FlexSelect card, `flexselect.json` beside config.json: shipped question kinds and layer.

The toy model answers only the kinds it learned to 90 % held-out accuracy; demos and benchmarks read them
from here. The calibrated reference layer and aggregation are also written into config.json
(`flexselect_reference_layer`, `flexselect_aggregation`) so the adapter can make them the model's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_FILE = "flexselect.json"
LAYER_KEY = "flexselect_reference_layer"
AGGREGATION_KEY = "flexselect_aggregation"


def read_card(directory: str | Path) -> dict[str, Any]:
    """The card of a local checkpoint directory ({} when there is none, e.g. a hub id)."""
    path = Path(directory) / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_card(directory: str | Path, **fields: Any) -> Path:
    """Merge `fields` into the card of `directory`; returns its path."""
    path = Path(directory) / CARD_FILE
    card = {**read_card(directory), **fields}
    path.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    return path


def shipped_kinds(directory: str | Path) -> tuple[str, ...] | None:
    """The question kinds a checkpoint ships, or None when its card names none."""
    kinds = read_card(directory).get("kinds")
    return tuple(kinds) if kinds else None


def set_reference_layer(directory: str | Path, layer: int, *, aggregation: str | None = None) -> None:
    """Record a calibrated reference layer (and aggregation) in config.json and in the card."""
    config_path = Path(directory) / "config.json"
    config = json.loads(config_path.read_text())
    config[LAYER_KEY] = layer
    fields: dict[str, Any] = {"reference_layer": layer}
    if aggregation is not None:
        config[AGGREGATION_KEY] = aggregation
        fields["aggregation"] = aggregation
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_card(directory, **fields)
