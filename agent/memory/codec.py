"""Chunks as raw little-endian bytes (never pickle): a 16-byte header and one fixed-width record per token.

Header: magic `FSMc`, uint32 rows, uint32 record width, uint32 reserved (0).
Record (packed, offsets in bytes): row u4 @0, time f8 @4, frame i8 @12, grid 3 x i8 @20, token_id i8 @44,
attention f4 @52, redundancy f4 @56, retention f4 @60, kind i1 @64, embeds D x dtype @65, then deepstack
L x D x dtype, then (streams of `PairedTokens`) the selector's row d x lite dtype. The Redis scripts read
`row`, `time` and `retention` at these offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from agent.memory.chunk import EMBED_DTYPES, ScoredChunk, lite_rows, with_lite
from agent.memory.errors import CorruptEntryError
from agent.memory.rows import Rows
from flexselect.types import VisualTokens

MAGIC = b"FSMc"
HEADER = struct.Struct("<4sIII")
HEADER_BYTES = HEADER.size  # 16
META_BYTES = 65
_TORCH_DTYPES = {name: dtype for dtype, name in EMBED_DTYPES.items()}
INDEX_DTYPE = np.dtype([("time", "<f8"), ("retention", "<f4")])  # packed: 12 bytes
_META_FIELDS = [
    ("row", "<u4", 0),
    ("time", "<f8", 4),
    ("frame", "<i8", 12),
    ("grid", ("<i8", (3,)), 20),
    ("token_id", "<i8", 44),
    ("attention", "<f4", 52),
    ("redundancy", "<f4", 56),
    ("retention", "<f4", 60),
    ("kind", "i1", 64),
]


META_DTYPE = np.dtype(
    {
        "names": [name for name, _, _ in _META_FIELDS],
        "formats": [fmt for _, fmt, _ in _META_FIELDS],
        "offsets": [off for _, _, off in _META_FIELDS],
        "itemsize": META_BYTES,
    }
)


@dataclass(frozen=True)
class Layout:
    """The fixed shape of a stream's records: embedding dtype and width, deepstack levels, step length,
    and the selector rows' dtype and width (`lite_dim` 0: plain `VisualTokens`, no selector rows)."""

    dtype: str
    dim: int
    levels: int
    seconds_per_step: float
    lite_dtype: str | None = None
    lite_dim: int = 0

    @property
    def embed_bytes(self) -> int:
        """Bytes of one token's embedding row (deepstack rows excluded)."""
        return self.dim * _TORCH_DTYPES[self.dtype].itemsize

    @property
    def lite_bytes(self) -> int:
        """Bytes of one token's selector row (0 without one)."""
        return self.lite_dim * _TORCH_DTYPES[self.lite_dtype].itemsize if self.lite_dtype else 0

    @property
    def row_bytes(self) -> int:
        """Bytes of one token's embedding row (deepstack and selector rows included)."""
        return self.embed_bytes * (1 + self.levels) + self.lite_bytes

    @property
    def width(self) -> int:
        """Bytes of one stored token record; the unit of the byte budgets."""
        return META_BYTES + self.row_bytes

    @classmethod
    def of(cls, tokens: VisualTokens) -> Layout:
        levels = 0 if tokens.deepstack is None else int(tokens.deepstack.shape[0])
        lite = lite_rows(tokens)
        return cls(
            EMBED_DTYPES[tokens.embeds.dtype],
            int(tokens.embeds.shape[1]),
            levels,
            tokens.seconds_per_step,
            None if lite is None else EMBED_DTYPES[lite.dtype],
            0 if lite is None else int(lite.shape[1]),
        )

    def encode(self) -> str:
        """`dtype;dim;levels;sps`, plus `;lite_dtype;lite_dim` with selector rows (plain ones unchanged)."""
        text = f"{self.dtype};{self.dim};{self.levels};{self.seconds_per_step!r}"
        return f"{text};{self.lite_dtype};{self.lite_dim}" if self.lite_dtype else text

    @classmethod
    def decode(cls, text: str) -> Layout:
        """Parse `encode()`'s output; CorruptEntryError on anything else."""
        try:
            parts = text.split(";")
            if len(parts) not in (4, 6):
                raise ValueError(f"{len(parts)} fields")
            dtype, dim, levels, sps = parts[:4]
            lite_dtype, lite_dim = (parts[4], int(parts[5])) if len(parts) == 6 else (None, 0)
            layout = cls(dtype, int(dim), int(levels), float(sps), lite_dtype, lite_dim)
        except ValueError as exc:
            raise CorruptEntryError(f"layout {text!r} does not parse") from exc
        if dtype not in _TORCH_DTYPES or layout.dim < 1 or layout.levels < 0:
            raise CorruptEntryError(f"layout {text!r} names an unknown dtype or a bad size")
        if lite_dtype is not None and (lite_dtype not in _TORCH_DTYPES or lite_dim < 1):
            raise CorruptEntryError(f"layout {text!r} names an unknown selector dtype or a bad width")
        return layout

    def describe(self) -> str:
        lite = f"selector rows {self.lite_dtype} x {self.lite_dim}" if self.lite_dtype else "no selector rows"
        steps = f"{self.levels} deepstack levels, {self.seconds_per_step} s/step"
        return f"{self.dtype} x {self.dim}, {steps}, {lite}"


def record_dtype(layout: Layout) -> np.dtype:
    """The numpy structured dtype of one record (packed, little-endian)."""
    emb = layout.embed_bytes
    fields = [*_META_FIELDS, ("embeds", f"V{emb}", META_BYTES)]
    if layout.levels:
        fields.append(("deepstack", f"V{emb * layout.levels}", META_BYTES + emb))
    if layout.lite_dtype:
        fields.append(("lite", f"V{layout.lite_bytes}", META_BYTES + emb * (1 + layout.levels)))
    names, formats, offsets = zip(*fields, strict=True)
    return np.dtype(
        {"names": list(names), "formats": list(formats), "offsets": list(offsets), "itemsize": layout.width}
    )


def _raw(t: torch.Tensor, n: int) -> np.ndarray:
    """(n,) void view of the bytes of `t`'s rows (`t` is (n, ...) contiguous)."""
    flat = t.contiguous().view(torch.uint8).reshape(n, -1).numpy()
    return flat.view(np.dtype(f"V{flat.shape[1]}")).reshape(n)


def encode_chunk(chunk: ScoredChunk) -> memoryview:
    """Header plus records of a scored chunk, in one buffer."""
    tokens, n = chunk.tokens, len(chunk)
    layout = Layout.of(tokens)
    buf = bytearray(HEADER_BYTES + n * layout.width)
    HEADER.pack_into(buf, 0, MAGIC, n, layout.width, 0)
    rec = np.frombuffer(buf, dtype=record_dtype(layout), count=n, offset=HEADER_BYTES)
    rec["row"] = np.arange(n, dtype=np.uint32)
    for name in ("time", "frame", "grid", "token_id", "kind"):
        rec[name] = getattr(tokens, name).numpy()
    for name in ("attention", "redundancy", "retention"):
        rec[name] = getattr(chunk, name).numpy()
    rec["embeds"] = _raw(tokens.embeds, n)
    if tokens.deepstack is not None:
        rec["deepstack"] = _raw(tokens.deepstack.transpose(0, 1), n)  # (L, N, D) -> (N, L, D) rows
    lite = lite_rows(tokens)
    if lite is not None:
        rec["lite"] = _raw(lite, n)
    return memoryview(buf)


def chunk_records(blob: bytes | memoryview, layout: Layout) -> memoryview:
    """The records part of a stored chunk after checking its header and length.

    Raises:
        CorruptEntryError: wrong magic, width or length (truncated or foreign bytes).
    """
    view = memoryview(blob)
    if len(view) < HEADER_BYTES:
        raise CorruptEntryError(f"chunk of {len(view)} bytes is shorter than its header")
    magic, n, width, _ = HEADER.unpack_from(view, 0)
    if magic != MAGIC or width != layout.width or len(view) != HEADER_BYTES + n * width:
        raise CorruptEntryError(
            f"chunk header magic={magic!r} rows={n} width={width} does not fit {len(view)} bytes of width "
            f"{layout.width}"
        )
    return view[HEADER_BYTES:]


def index_bytes(chunk: ScoredChunk) -> bytes:
    """Per token `<df` (time, retention): what the append script indexes, 12 bytes a token."""
    index = np.empty(len(chunk), dtype=INDEX_DTYPE)
    index["time"] = chunk.tokens.time.numpy()
    index["retention"] = chunk.retention.numpy()
    return index.tobytes()


def _alive(records: np.ndarray, dead: bytes | None) -> np.ndarray | None:
    """Positions of the records whose original row is not set in the `dead` bitmap (None: all alive)."""
    if not dead:
        return None
    rows = np.ascontiguousarray(records[:, 0:4]).view("<u4").reshape(-1)
    bits = np.unpackbits(np.frombuffer(dead, dtype=np.uint8), bitorder="big")  # Redis SETBIT order
    marked = np.zeros(rows.shape[0], dtype=bool)
    known = rows < bits.shape[0]
    marked[known] = bits[rows[known]].astype(bool)
    return np.flatnonzero(~marked)


def decode_parts(
    parts: Sequence[tuple[bytes | memoryview, bytes | None]], layout: Layout
) -> tuple[Rows, list[int]]:
    """Rows from several record buffers (headers already stripped), skipping rows marked dead.

    Each field is copied once, straight from the buffers into its output tensor.

    Args:
        parts: (records, dead-row bitmap or None) per stored chunk.
        layout: the stream's layout.

    Returns:
        The live rows in part order, and how many came from each part.
    """
    width, emb = layout.width, layout.embed_bytes
    views = [np.frombuffer(records, dtype=np.uint8).reshape(-1, width) for records, _ in parts]
    keeps = [_alive(view, dead) for view, (_, dead) in zip(views, parts, strict=True)]
    counts = [
        view.shape[0] if keep is None else keep.shape[0] for view, keep in zip(views, keeps, strict=True)
    ]
    n = sum(counts)
    ends = META_BYTES + emb * (1 + layout.levels)  # where the deepstack rows end
    columns = [(0, META_BYTES), (META_BYTES, META_BYTES + emb)]
    if layout.levels:
        columns.append((META_BYTES + emb, ends))
    if layout.lite_dtype:
        columns.append((ends, width))
    outputs = [np.empty((n, hi - lo), dtype=np.uint8) for lo, hi in columns]
    start = 0
    for view, keep, count in zip(views, keeps, counts, strict=True):
        for out, (lo, hi) in zip(outputs, columns, strict=True):
            if keep is None:
                out[start : start + count] = view[:, lo:hi]
            else:
                np.take(view[:, lo:hi], keep, axis=0, out=out[start : start + count], mode="clip")
        start += count
    return _rows(outputs, layout, n), counts


def decode_records(records: bytes | memoryview, layout: Layout) -> Rows:
    """Rows from one contiguous record buffer (no header)."""
    return decode_parts([(records, None)], layout)[0]


def _rows(outputs: list[np.ndarray], layout: Layout, n: int) -> Rows:
    meta = outputs[0].view(META_DTYPE).reshape(n)

    def column(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(meta[name], copy=True, order="C"))

    def embedding(raw: np.ndarray, name: str, *shape: int) -> torch.Tensor:
        dtype = _TORCH_DTYPES[name]
        return torch.from_numpy(raw).view(dtype).reshape(shape) if n else torch.empty(shape, dtype=dtype)

    deepstack = lite = None
    if layout.levels:
        deepstack = (
            embedding(outputs[2], layout.dtype, n, layout.levels, layout.dim).transpose(0, 1).contiguous()
        )  # (L, N, D)
    if layout.lite_dtype:
        lite = embedding(outputs[-1], layout.lite_dtype, n, layout.lite_dim)
    tokens = VisualTokens(
        embeds=embedding(outputs[1], layout.dtype, n, layout.dim),
        frame=column("frame"),
        time=column("time"),
        grid=column("grid").reshape(n, 3),
        kind=column("kind"),
        token_id=column("token_id"),
        deepstack=deepstack,
        seconds_per_step=layout.seconds_per_step,
    )
    return Rows(
        with_lite(tokens, lite),
        column("attention"),
        column("redundancy"),
        column("retention"),
        column("row").to(torch.int64),
    )
