"""Local-only behaviour: the snapshot file written at close and loaded at connect."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from agent.memory import MemoryConfig, open_memory
from tests.memory.memory_helpers import make_paired, make_tokens, ones


async def test_the_snapshot_is_a_plain_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "memory.safetensors"
    async with open_memory(MemoryConfig(snapshot_path=path)) as memory:
        await memory.append("cam1", make_tokens([0, 1]), ones(make_tokens([0, 1])))
    with safe_open(str(path), framework="pt") as fh:
        names = sorted(fh.keys())
        meta = fh.metadata()
    assert names == [
        f"s0.{n}"
        for n in sorted(
            [
                "embeds",
                "frame",
                "time",
                "grid",
                "kind",
                "token_id",
                "attention",
                "redundancy",
                "retention",
                "row",
                "chunk",
            ]
        )
    ]
    assert meta["format"] == "fsa-memory-snapshot/1"


async def test_a_corrupt_snapshot_is_set_aside_and_the_memory_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "memory.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    async with open_memory(MemoryConfig(snapshot_path=path)) as memory:
        stats = await memory.stats()
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
    assert (stats.tokens, stats.corrupt_entries) == (0, 1)
    assert (tmp_path / "memory.safetensors.corrupt").exists()
    async with open_memory(MemoryConfig(snapshot_path=path)) as memory:
        assert (await memory.stats()).tokens == 4


async def test_without_a_snapshot_path_a_restart_starts_empty(tmp_path: Path) -> None:
    async with open_memory(MemoryConfig()) as memory:
        await memory.append("cam1", make_tokens([0]), ones(make_tokens([0])))
    async with open_memory(MemoryConfig()) as memory:
        assert (await memory.stats()).tokens == 0 and await memory.streams() == []


async def test_the_snapshot_keeps_selector_rows_as_a_raw_tensor(tmp_path: Path) -> None:
    path = tmp_path / "memory.safetensors"
    tokens = make_paired([0, 1], lite_dim=6)
    async with open_memory(MemoryConfig(snapshot_path=path)) as memory:
        await memory.append("cam1", tokens, ones(tokens))
    with safe_open(str(path), framework="pt") as fh:
        lite = fh.get_tensor("s0.lite")
    assert tokens.lite is not None and torch.equal(lite, tokens.lite)
