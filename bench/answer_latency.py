"""Answer latency against memory size: full prefill of every retained token versus FlexSelect.

    python bench/answer_latency.py [--model tiny|qwen2.5-vl-7b] [--sizes 16384,65536,131072]
                                   [--budget 7040] [--repeats 5] [--out bench/results]

A stream's memory (the agent's in-process memory) is filled with N retained visual tokens; then the same
question is answered repeatedly through the real code path: memory read, selection (training-free
reference layer, or a FlexSelect-Lite selector), prefill of `[prefix | kept | question]` to the first token,
and greedy decoding. Full prefill of all N tokens is the baseline where it fits. Methods:

- `full`: every retained token; `reference`: training-free FlexSelect at the model's reference layer;
- `lite`: a fresh selector pass over the retained tokens per question (Qwen2.5-0.5B shapes for the 7B
  model, the tiny preset for the tiny one; random weights: speed does not depend on their values);
- `lite-cached`: the selector's keys and values built once at ingest (`SelectorCache`, timed separately
  as `ingest_ms`), so a question runs only its own tokens against them. As in the agent
  (`agent.kept_rows`), its read is the memory's layout (metadata, no embeddings: `read`) and, after
  selection, the kept rows' embeddings (`read_rows`); every other method reads every retained token.
  `read_mb` is what the memory read per question.
- `lite-cached-graphs`: `lite-cached` with the answer's decode steps replayed from CUDA graphs over a
  static KV cache (`flexselect.decoding`, the agent's `model.decode_graphs`); on a CPU the same static
  steps run without graphs. Its `decode_ms` against `lite-cached`'s is the graphs' effect (the first
  answer, which captures the graph, is the warm-up run and not counted).
- `lite-agent`: the agent's own question path (`agent.kept_rows.answer_kept` on an `Engine` with
  `scorer: lite`, its memory on an event loop of its own, as in the service): the layout read, the
  synced selector caches' scores (matching the cached rows to the retained ones, then one question pass),
  top-k, the kept rows' read, and the answer with its evidence ranking (`rank_ms`, after the answer).
  What `lite-cached` leaves out (the cache matching, the reference layer's capture) shows here. While
  its memory's thread lives (it has run multi-threaded torch ops), small CPU ops in the measuring thread
  run about 2.4x slower on the 2-core dev VM, as in the service (model thread beside the event loop), so
  it is built only for its own runs.

Stage times are medians and p95 over the repeats; each size's rows are printed and the JSON rewritten as
soon as the size is done, so a run cut short keeps what it measured. On a GPU use `--model qwen2.5-vl-7b`
(random weights of the published shapes, bf16); on a CPU the tiny configuration runs smaller sizes and only
the ratios mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from agent.config import ModelSection
from agent.engine import Engine
from agent.kept_rows import KeptRowsStats, QuestionReads, answer_kept
from agent.memory import MemoryConfig, RetentionConfig, TokenMemory, open_memory
from agent.memory.base import RetainedLayout
from bench.report import environment, plot, table, write_json
from flexselect.adapters import Qwen25VLAdapter, VideoLLMAdapter
from flexselect.budget import select, selection_pays, top_k
from flexselect.config import SelectionConfig
from flexselect.decoding import StaticDecoder
from flexselect.lite import LiteScorer, LiteSelector, PairedTokens, SelectorCache
from flexselect.ranking import ReferenceScorer
from flexselect.timing import synced_now
from flexselect.types import TokenKind, VisualTokens

QUESTION = "what color was the square that crossed the left side of the loading dock this morning ?"
COLUMNS = [
    "tokens", "method", "read_ms", "read_mb", "select_ms", "prefill_ms", "decode_ms", "decoder", "ttft_ms",
    "ttft_p95_ms", "build_ms", "rank_ms", "total_ms", "speedup_ttft", "ingest_ms", "note",
]  # fmt: skip


def build(model: str, max_tokens: int = 0) -> tuple[VideoLLMAdapter, int]:
    """The adapter and its tokens per frame (128 at 448x448 for the 7B shapes), its position limit raised
    past `max_tokens` so that full prefill runs at every size (speed does not depend on the limit)."""
    if model == "qwen2.5-vl-7b":
        from flexselect.shapes import qwen2_5_vl_7b

        net, processor = qwen2_5_vl_7b(device="cuda", max_positions=max(128_000, max_tokens + 4096))
        return Qwen25VLAdapter(net, processor), 128
    from flexselect.tiny import build_tiny

    net, processor = build_tiny("qwen2_5_vl", max_positions=1 << 20, frame_side=112)
    return Qwen25VLAdapter(net, processor), 16


def build_selector(adapter: VideoLLMAdapter, model: str) -> LiteSelector:
    """A random selector of the paper's shapes (for the 7B) or the tiny preset, on the model's device."""
    from lab.selector.recipe import decoder_for

    torch.manual_seed(0)
    preset = "qwen2.5-0.5b" if model == "qwen2.5-vl-7b" else "tiny"
    selector = LiteSelector.for_adapter(adapter, decoder_for(preset, adapter))
    return selector.to(device=adapter.device, dtype=adapter.model.dtype).eval()


def synthetic_tokens(
    adapter: VideoLLMAdapter, n: int, per_frame: int, seed: int, selector: LiteSelector
) -> PairedTokens:
    """`n` retained tokens laid out as 1 fps frames of `per_frame` tokens (random embeddings, the
    selector's included)."""
    g = torch.Generator().manual_seed(seed)
    width = adapter.text_config.hidden_size
    idx = torch.arange(n)
    frame = idx // per_frame
    side = int(per_frame**0.5)
    grid = torch.stack([frame // 2, (idx % per_frame) // side, idx % side], dim=1)
    lite = torch.randn(n, selector.config.decoder.hidden, generator=g) * 0.02
    return PairedTokens(
        lite=lite.to(adapter.model.dtype),
        embeds=(torch.randn(n, width, generator=g) * 0.02).to(adapter.model.dtype),
        frame=frame,
        time=frame.double(),
        grid=grid,
        kind=torch.full((n,), int(TokenKind.PATCH), dtype=torch.int8),
        token_id=torch.full((n,), int(adapter.config.video_token_id), dtype=torch.long),
        seconds_per_step=2.0,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def eight_frame_chunks(tokens: VisualTokens, per_frame: int) -> list[VisualTokens]:
    """`tokens` in chunks of 8 frames, as the memory and the selector caches receive them here."""
    size = per_frame * 8
    return [tokens.select(torch.arange(s, min(len(tokens), s + size))) for s in range(0, len(tokens), size)]


async def fill_memory(tokens: VisualTokens, per_frame: int):
    config = MemoryConfig(
        retention=RetentionConfig(
            max_tokens_per_stream=len(tokens) + 1,
            max_tokens_total=len(tokens) + 1,
            max_bytes_per_stream=1 << 40,
            max_bytes_total=1 << 40,
        )
    )
    memory = open_memory(config)
    await memory.connect()
    for part in eight_frame_chunks(tokens, per_frame):
        await memory.append("cam", part, torch.ones(len(part)))
    return memory


def build_cache(selector: LiteSelector, adapter: VideoLLMAdapter, tokens: PairedTokens, per_frame: int):
    """The selector's ingest-time state for `tokens`, appended in chunks of 8 frames (as the memory is)."""
    cache = SelectorCache(
        selector, adapter.prompt(QUESTION).prefix_ids, max_group_tokens=64 * per_frame, max_group_frames=64
    )
    for part in eight_frame_chunks(tokens, per_frame):
        cache.append(part)
    return cache


class AgentPath:
    """The agent's question path over `tokens`: an `Engine` with `scorer: lite` (the bench's selector,
    saved and loaded as the agent loads one), its selector cache filled in 8-frame chunks, and a memory
    on an event loop of its own thread, read through `QuestionReads` as the model worker reads it."""

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        selector: LiteSelector,
        tokens: PairedTokens,
        per_frame: int,
        budget: int,
        new_tokens: int,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.memory = self._wait(fill_memory(tokens, per_frame))
        self.budget = budget
        with tempfile.TemporaryDirectory() as directory:
            selector.save(directory)
            config = ModelSection(
                name="bench",
                scorer="lite",
                selector=directory,
                budget=budget,
                max_new_tokens=new_tokens,
                max_frames_per_group=64,
            )
            self.engine = Engine(adapter, config, standing_prompts=[], cache_max_rows=2 * len(tokens))
        assert self.engine.caches is not None
        start = time.perf_counter()
        for part in eight_frame_chunks(tokens, per_frame):
            self.engine.caches.ingest("cam", part)
        self.ingest_ms = (synced_now() - start) * 1e3

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def answer(self) -> dict[str, float]:
        """Stage times (ms) of one question, as `time_answer` names them, plus `rank` and `read_mb`."""
        bytes_before = self._wait(self.memory.stats()).bytes_read
        start = time.perf_counter()
        layout = self._wait(self.memory.read_layout(["cam"]))["cam"]
        read_ms = (time.perf_counter() - start) * 1e3
        reads = QuestionReads(self.memory, self.loop, ["cam"], None, None, timeout_s=300.0)
        stats = KeptRowsStats()
        start = time.perf_counter()
        answer = answer_kept(self.engine, QUESTION, [("cam", layout)], self.budget, reads, stats)
        total_ms = (synced_now() - start) * 1e3
        if stats.kept != 1:
            raise RuntimeError(f"the agent path read every row ({stats}): its cache or memory is out of step")
        t = answer.timings_ms
        stages = {
            "read": read_ms + t["read_rows"],
            "read_mb": (self._wait(self.memory.stats()).bytes_read - bytes_before) / 1e6,
            "select": t["select"],
            "prefill": t["prefill"],
            "decode": t["generate"],
            "rank": t["rank"],
        }
        stages["build"] = total_ms - sum(t[k] for k in ("select", "read_rows", "prefill", "generate", "rank"))
        return stages

    def close(self) -> None:
        self._wait(self.memory.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def time_answer(
    adapter: VideoLLMAdapter,
    tokens: VisualTokens,
    method: str,
    budget: int,
    new_tokens: int,
    selector: LiteSelector | None = None,
    cache: SelectorCache | None = None,
    *,
    full_when_cheaper: bool = False,
    read_rows: Callable[[torch.Tensor], VisualTokens] | None = None,
) -> dict[str, float] | None:
    """Stage times (ms) of one answer, or None when the method does not fit (`lite` needs the selector,
    `lite-cached` its cache). With `full_when_cheaper`, `reference` answers over every token where
    selection cannot pay (as the pipeline's option does) and marks the stages with `fallback`. With
    `read_rows`, `tokens` carry only the layout and `read_rows(keep)` gives the kept rows (`read_rows`)."""
    prompt = adapter.prompt(QUESTION)
    stages: dict[str, float] = {}
    keep = None
    if (
        full_when_cheaper
        and method == "reference"
        and not selection_pays(
            len(tokens), budget, layer=ReferenceScorer(adapter).layer, depth=adapter.num_layers
        )
    ):
        method = "full"  # selection cannot pay: the pipeline's `full_when_cheaper` answers over every token
        stages["fallback"] = 1.0
    if method in ("reference", "lite"):
        start = time.perf_counter()
        if method == "reference":
            scorer: ReferenceScorer | LiteScorer = ReferenceScorer(adapter)
        else:
            assert selector is not None
            scorer = LiteScorer(selector)
        config = SelectionConfig(budget=budget, max_frames_per_group=64)
        room = adapter.max_positions - len(prompt.prefix_ids) - len(prompt.suffix_ids)
        keep = select(scorer, prompt, tokens, config, max_group_tokens=room).index
        stages["select"] = (synced_now() - start) * 1e3
    elif method == "lite-cached":
        assert cache is not None
        start = time.perf_counter()
        scores = cache.score(prompt)  # on the device; top-k there, then the kept indices to the host
        keep = top_k(scores, cache.group_indices(), budget, "global").cpu()
        stages["select"] = (synced_now() - start) * 1e3
    elif method == "full" and len(tokens) + 200 > adapter.max_positions:
        return None
    kept_rows = None
    if read_rows is not None:
        assert keep is not None
        start = time.perf_counter()
        kept_rows = read_rows(keep)
        stages["read_rows"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    seq = adapter.build_sequence(prompt, tokens, keep, kept_rows=kept_rows)
    answer = adapter.generate(seq, max_new_tokens=new_tokens)
    stages["build"] = (time.perf_counter() - start) * 1e3 - sum(answer.timings_ms.values())
    stages["prefill"] = answer.timings_ms["prefill"]
    stages["decode"] = answer.timings_ms["generate"]
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "qwen2.5-vl-7b"), default="tiny")
    parser.add_argument(
        "--sizes", default=None, help="retained tokens (default: 16k,64k,128k on GPU; smaller on CPU)"
    )
    parser.add_argument(
        "--budget", type=int, default=None, help="kept tokens (default 7040, tiny: 32 frames)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full-repeats",
        type=int,
        default=2,
        help="repeats of full prefill above 65,536 tokens (slowest row)",
    )
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--methods", default="full,reference,lite,lite-cached,lite-cached-graphs,lite-agent")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    methods = args.methods.split(",")
    big = args.model != "tiny"
    sizes = [int(s) for s in (args.sizes or ("16384,65536,131072" if big else "2048,8192,32768")).split(",")]
    adapter, per_frame = build(args.model, max(sizes))  # built once for every size
    selector = build_selector(adapter, args.model)
    budget = args.budget or (7040 if big else 32 * per_frame)
    graphs = adapter.device.type == "cuda"
    decoder = StaticDecoder(adapter, graphs=graphs) if "lite-cached-graphs" in methods else None
    rows: list[dict[str, Any]] = []
    warmed: set[str] = set()
    for n in sizes:
        tokens = synthetic_tokens(adapter, n, per_frame, seed=n, selector=selector)
        memory = asyncio.run(fill_memory(tokens, per_frame))
        cache, ingest_ms = None, None
        if "lite-cached" in methods or "lite-cached-graphs" in methods:
            start = time.perf_counter()
            cache = build_cache(selector, adapter, tokens, per_frame)
            ingest_ms = (synced_now() - start) * 1e3
        agent = None
        for method in methods:
            if method == "lite-agent":  # built in its turn, closed after: see the module docstring
                agent = AgentPath(adapter, selector, tokens, per_frame, budget, args.new_tokens)
            adapter.decoder = decoder if method == "lite-cached-graphs" else None
            cached = method.startswith("lite-cached")
            repeats = args.full_repeats if method == "full" and n > 65_536 else args.repeats
            warm = 0 if method in warmed else 1  # the first run of a method warms its kernels up
            runs: list[dict[str, float]] = []
            for _ in range(repeats + warm):
                if method == "lite-agent":
                    assert agent is not None
                    runs.append(agent.answer())
                    continue
                bytes_before = asyncio.run(memory.stats()).bytes_read
                start = time.perf_counter()
                rows_of = None
                if cached:  # the agent's kept-rows read: the layout, then the kept rows
                    layout = asyncio.run(memory.read_layout(["cam"]))["cam"]
                    retained = layout.tokens

                    def rows_of(
                        keep: torch.Tensor, memory: TokenMemory = memory, layout: RetainedLayout = layout
                    ) -> VisualTokens:
                        return asyncio.run(memory.read_rows(layout, keep))
                else:
                    retained = asyncio.run(memory.read(["cam"]))["cam"].tokens
                read_ms = (time.perf_counter() - start) * 1e3
                stages = time_answer(
                    adapter,
                    retained,
                    "lite-cached" if cached else method,
                    budget,
                    args.new_tokens,
                    selector,
                    cache,
                    full_when_cheaper=True,
                    read_rows=rows_of,
                )
                if stages is None:
                    break
                read_mb = (asyncio.run(memory.stats()).bytes_read - bytes_before) / 1e6
                runs.append({"read": read_ms + stages.pop("read_rows", 0.0), "read_mb": read_mb, **stages})
            if not runs:
                rows.append({"tokens": n, "method": method, "note": "does not fit"})
                continue
            warmed.add(method)
            runs = runs[warm:] or runs
            fallback = bool(runs[0].pop("fallback", 0.0))
            for r in runs[1:]:
                r.pop("fallback", None)
            ttft = [r["read"] + r.get("select", 0.0) + r["build"] + r["prefill"] for r in runs]
            total = [t + r["decode"] for t, r in zip(ttft, runs, strict=True)]
            row: dict[str, Any] = {"tokens": n, "method": method, "repeats": len(runs)}
            row["read_mb"] = statistics.median(r.pop("read_mb") for r in runs)  # bytes read per question
            for k in runs[0]:
                row[f"{k}_ms"] = statistics.median(r[k] for r in runs)
                row[f"{k}_p95_ms"] = percentile([r[k] for r in runs], 0.95)
            row.update(ttft_ms=statistics.median(ttft), ttft_p95_ms=percentile(ttft, 0.95))
            row.update(total_ms=statistics.median(total), total_p95_ms=percentile(total, 0.95))
            row["decoder"] = "eager"
            if method == "lite-cached-graphs":
                row["decoder"] = "cuda-graphs" if graphs else "static"
            if cached:
                row["ingest_ms"] = ingest_ms  # once per token at ingest, not per question
                assert cache is not None
                row["state_mb"] = cache.nbytes() / 2**20
            if method == "lite-agent":
                assert agent is not None and agent.engine.caches is not None
                row["ingest_ms"] = agent.ingest_ms
                row["state_mb"] = agent.engine.caches.cache("cam").nbytes() / 2**20
            if fallback:
                row["note"] = "full prefill: selection cannot pay (full_when_cheaper)"
            rows.append(row)
            if agent is not None:
                agent.close()
                agent = None
        full = next((r for r in rows if r["tokens"] == n and r["method"] == "full" and "ttft_ms" in r), None)
        for r in rows:
            if r["tokens"] == n and full and "ttft_ms" in r:
                r["speedup_ttft"] = full["ttft_ms"] / r["ttft_ms"]
        print(table([r for r in rows if r["tokens"] == n], COLUMNS), flush=True)  # a cut-short run keeps it
        write_json(args.out / f"answer_latency_{args.model}.json", {"budget": budget, "rows": rows})
    env = environment()
    print(
        f"answer latency, {args.model}, budget {budget}, {args.repeats} repeats (medians; p95 in the JSON); "
        f"{env['device']}"
    )
    print(table(rows, COLUMNS))
    if not big:
        print("(CPU, tiny configuration: only the ratios mean anything; on a GPU run --model qwen2.5-vl-7b)")
    series = {
        m: (
            [r["tokens"] for r in rows if r["method"] == m and "ttft_ms" in r],
            [r["ttft_ms"] / 1e3 for r in rows if r["method"] == m and "ttft_ms" in r],
        )
        for m in methods
    }
    plot(
        args.out / f"answer_latency_{args.model}.png",
        series,
        xlabel="retained tokens",
        ylabel="time to first token (s)",
        title="Answer latency against memory size",
    )


if __name__ == "__main__":
    main()
