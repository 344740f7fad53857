"""The scorer factory: `--scorer none|reference|lite` to the object FlexSelect's selection calls.

"none" answers over every visual token (the base model); "reference" is training-free FlexSelect at the
model's reference layer; "lite" is a trained FlexSelect-Lite selector (`--selector DIR`; the shipped one
by default for the toy model), which needs the videos encoded with `flexselect.lite.encode_pair`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.models import TOY_MODEL_DIR
from agent.selector import load_selector_for
from flexselect.adapters import VideoLLMAdapter
from flexselect.budget import Scorer
from flexselect.lite import LiteScorer, SelectorError
from flexselect.ranking import ReferenceScorer
from lab.eval.settings import RunSettings

ScorerBuilder = Callable[[VideoLLMAdapter, RunSettings], Scorer | None]


class ScorerUnavailable(Exception):
    """The requested scorer cannot be built here (not implemented yet, or missing its checkpoint)."""


def _none(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    return None


def _reference(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    try:
        return ReferenceScorer(
            adapter, layer=settings.selection.layer, aggregation=settings.selection.aggregation
        )
    except ValueError as exc:
        raise ScorerUnavailable(str(exc)) from None


def _lite(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    model = "toy" if Path(settings.model).resolve() == TOY_MODEL_DIR.resolve() else settings.model
    try:
        return LiteScorer(load_selector_for(settings.selector, model, adapter))
    except (SelectorError, OSError, ValueError) as exc:
        raise ScorerUnavailable(f"--scorer lite: {str(exc).splitlines()[0]}") from None


SCORERS: dict[str, ScorerBuilder] = {"none": _none, "reference": _reference, "lite": _lite}


def check_available(kind: str) -> None:
    """Fail fast, before loading a model, for a scorer name that does not exist."""
    if kind not in SCORERS:
        raise ScorerUnavailable(f"unknown scorer {kind!r}; choose one of {', '.join(SCORERS)}")


def make_scorer(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    """The scorer `settings.scorer` names, built for `adapter`."""
    check_available(settings.scorer)
    return SCORERS[settings.scorer](adapter, settings)
