"""The model card (README.md) written beside a trained selector: what it imitates, how, and how well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flexselect.lite import LiteSelector

CARD_FILE = "README.md"
RESULTS_FILE = "eval.json"


def write_model_card(
    directory: Path,
    *,
    recipe: dict[str, Any],
    history: list[dict[str, Any]],
    results: dict[str, Any],
    wall_s: float,
) -> Path:
    """Write README.md (and eval.json with the raw numbers) into a selector directory."""
    selector = LiteSelector.load(directory)
    c, d, p = selector.config, selector.config.decoder, selector.config.projector
    params = sum(x.numel() for x in selector.parameters())
    (directory / RESULTS_FILE).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    by_k = sorted(results.get("recall_by_k", {}).items(), key=lambda item: int(item[0]))
    recall = ", ".join(f"K={k}: {v:.3f}" for k, v in by_k)
    last = history[-1] if history else {}
    t = recipe["train"]
    sections = list(d.mrope_section) if d.mrope_section else None
    loss = "soft Spearman" + (" + L1" if t["l1_weight"] else "")
    projector_state = "trained" if t["train_projector"] else "frozen"
    lines = [
        f"# FlexSelect-Lite selector for `{c.base_model}`",
        "",
        f"A small Qwen2-family decoder trained to rank the visual tokens of `{c.base_model}` as its",
        f"training-free reference layer (layer {c.teacher_layer}) does: FlexSelect-Lite, arXiv 2506.00993,",
        "section 2. Load it with `flexselect.lite.LiteSelector.load(DIR)` (safetensors, no pickle).",
        "",
        "## Model",
        f"- decoder: {d.layers} layers, hidden {d.hidden}, {d.heads} heads ({d.kv_heads} kv), "
        f"MLP {d.intermediate},",
        f"  M-RoPE sections {sections}, rope theta {d.rope_theta:g}, vocabulary {d.vocab_size} "
        "(the base's token ids)",
        f"- projector: `{p.kind}` over {p.feature_dim}-wide vision features ({p.rows} rows per token, "
        f"{p.norm} norm),",
        "  initialised from the base merger (truncated to the selector width)",
        f"- {params:,} parameters; a token's score is the {c.aggregation} over heads and question tokens",
        "  of the last layer's question-to-visual attention",
        "",
        "## Training",
        f"- teacher: the base model's reference layer {c.teacher_layer} "
        f"(`ReferenceScorer`, {c.aggregation} aggregation)",
        f"- data: {recipe['train_clips']} synthetic-world clips of {recipe['lengths']} frames "
        f"({recipe['size']} px), one question each;",
        f"  held-out: {recipe['heldout_clips']} clips of {recipe['heldout_frames']} frames",
        f"- loss: {loss} (tau {t['tau']} standard deviations of the log scores)",
        f"- AdamW lr {t['lr']:g} to {t['min_lr']:g} (cosine, {t['warmup']:.0%} warm-up), "
        f"batch {t['batch_size']},",
        f"  {t['epochs']} epochs, clip {t['grad_clip']}, seed {t['seed']}, projector {projector_state}",
        f"- wall time: {wall_s / 60:.1f} min on 2 shared CPU cores, teacher scoring included",
        f"- last epoch: train loss {last.get('train_loss', float('nan')):.4f}, "
        f"held-out Spearman {last.get('spearman', float('nan')):.4f}",
        "",
        f"## Results ({results['n']} unseen clips of {results.get('frames', '?')} frames)",
        f"- Spearman correlation with the teacher: **{results['spearman']:.3f}**",
        f"- recall of the teacher's top-K: **{results['recall_at_k']:.3f}** at K={results['k']} ({recall})",
        f"- scoring cost: {results['ms_per_1k_tokens']:.2f} ms per 1k tokens, against "
        f"{results['teacher_ms_per_1k_tokens']:.2f} ms for the reference layer",
        "  (CPU, one thread; at this toy scale both are dominated by per-call overhead)",
        "",
        "## Reproduce",
        "```",
        f"flexselect-agent selector train --model {c.base_model} --out DIR --card \\",
        "    --teacher-cache /tmp/selector-teacher",
        "flexselect-agent selector eval --selector DIR --json",
        "```",
    ]
    path = directory / CARD_FILE
    path.write_text("\n".join(lines) + "\n")
    return path
