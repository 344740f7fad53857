"""The scorer factory: `--scorer none|reference|lite` to the object FlexSelect's selection calls.

"none" answers over every visual token (the base model); "reference" is training-free FlexSelect at the
model's reference layer; "lite" (the trained FlexSelect-Lite selector, `--selector DIR`) plugs in here
once it exists and until then fails before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model stack is imported when a run starts
    from agent.eval.settings import RunSettings
    from flexselect.adapters import VideoLLMAdapter
    from flexselect.budget import Scorer

ScorerBuilder = Callable[["VideoLLMAdapter", "RunSettings"], "Scorer | None"]


class ScorerUnavailable(Exception):
    """The requested scorer cannot be built here (not implemented yet, or missing its checkpoint)."""


def _none(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    return None


def _reference(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    from flexselect.ranking import ReferenceScorer

    try:
        return ReferenceScorer(
            adapter, layer=settings.selection.layer, aggregation=settings.selection.aggregation
        )
    except ValueError as exc:
        raise ScorerUnavailable(str(exc)) from None


def _lite(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    raise ScorerUnavailable(LITE_UNAVAILABLE)


LITE_UNAVAILABLE = (
    "--scorer lite is not available yet: loading a FlexSelect-Lite selector (--selector DIR) arrives in a "
    "later issue; use --scorer reference or --scorer none"
)
SCORERS: dict[str, ScorerBuilder] = {"none": _none, "reference": _reference, "lite": _lite}


def check_available(kind: str) -> None:
    """Fail fast, before loading a model, for a scorer that cannot be built."""
    if kind not in SCORERS:
        raise ScorerUnavailable(f"unknown scorer {kind!r}; choose one of {', '.join(SCORERS)}")
    if SCORERS[kind] is _lite:
        raise ScorerUnavailable(LITE_UNAVAILABLE)


def make_scorer(adapter: VideoLLMAdapter, settings: RunSettings) -> Scorer | None:
    """The scorer `settings.scorer` names, built for `adapter`."""
    check_available(settings.scorer)
    return SCORERS[settings.scorer](adapter, settings)
