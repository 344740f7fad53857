"""The body of a source's decoder thread: connect, decode, sample, chunk, hand over, reconnect.

PyAV releases the GIL while it reads and decodes, so one such thread per source runs alongside the
event loop. The thread never touches asyncio objects directly: chunks go through `ChunkChannel`
and state changes through the `notify` callback, both of which schedule onto the loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import av
import av.error
from av.container import InputContainer

from common.backoff import Backoff
from streams.backends import open_container, translate_av_error, video_stream
from streams.channel import ChunkChannel
from streams.chunker import Chunker, FrameSampler
from streams.clock import LiveClock, Pacer
from streams.config import StreamConfig
from streams.errors import InvalidMediaError, SourceUnavailableError, StreamError
from streams.frames import to_rgb
from streams.source import Chunk, StreamState, StreamStats
from streams.uri import SourceSpec
from streams.watchdog import StallWatchdog

logger = logging.getLogger(__name__)
# At a live session's start: at most this many packets buffered while probing are read ahead, and
# a read that takes longer than BACKLOG_WAIT_FRACTION of a frame interval waited for the network.
MAX_BACKLOG = 1000
BACKLOG_WAIT_FRACTION = 0.25
BACKLOG_WAIT_MIN_S = 0.005

# A recording whose packets stop this far short of its stated duration is reported as truncated.
TRUNCATION_SLACK_S = 1.0
TRUNCATION_SLACK_FRACTION = 0.02


class _Stalled(Exception):
    """Internal: the watchdog ended a session."""


class DecodeWorker:
    """Runs one source until it ends, fails or is stopped; see `run`."""

    def __init__(
        self,
        spec: SourceSpec,
        config: StreamConfig,
        *,
        stream_id: str,
        live: bool,
        channel: ChunkChannel,
        stats: StreamStats,
        stop: threading.Event,
        notify: Callable[[StreamState], None],
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.stream_id = stream_id
        self.live = live
        self.state = StreamState.CONNECTING
        self._channel = channel
        self._stats = stats
        self._stop = stop
        self._notify = notify
        self._sampler = FrameSampler(config.sample_fps)
        self._chunker = Chunker(
            stream_id,
            chunk_seconds=config.chunk_seconds,
            frames_per_chunk=config.frames_per_chunk(),
            live=live,
        )
        self._watchdog = StallWatchdog(config.stall_seconds)
        self._backoff = Backoff(config.backoff, rng=rng)
        self._clock = LiveClock()
        self._pacer = Pacer(stop) if config.realtime and not live else None
        self._decoded = 0  # frames out of the decoder since the source started
        self._packets = 0  # video packets read since the source started
        self._key_packets: dict[int, int] = {}  # keyframe pts -> packet ordinal, keyframes-only mode
        self._last_index = -1
        self._media_end = 0.0  # end of the latest packet, media seconds (recordings)
        self._start_s = 0.0  # media time of the stream's first frame
        self._fps = 0.0

    # --- life cycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Work until the source ends, fails or `stop` is set; always tells the channel it is finished."""
        error: BaseException | None = None
        try:
            error = self._run()
        except Exception as exc:  # the thread's boundary: a bug must not leave the consumer waiting
            logger.exception("stream %s: decoder thread crashed", self.stream_id)
            error = StreamError(f"decoder thread crashed: {type(exc).__name__}", uri=self.spec.masked)
            self._stats.last_error = str(error)
            self._set_state(StreamState.FAILED)
        finally:
            self._channel.finish(error)

    def _run(self) -> StreamError | None:
        while not self._stop.is_set():
            self._set_state(StreamState.CONNECTING)
            try:
                self._session()
                if self._stop.is_set():
                    return None
                if not self.live:
                    self._set_state(StreamState.ENDED)
                    return None
                error: StreamError = SourceUnavailableError(
                    "the stream ended (closed by the server)", uri=self.spec.masked
                )
            except _Stalled as stall:
                error = SourceUnavailableError(str(stall), uri=self.spec.masked)
            except StreamError as exc:
                error = exc
            if self._stop.is_set():
                return None
            self._stats.last_error = str(error)
            if not self._may_retry():
                logger.error("stream %s failed: %s", self.stream_id, error)
                self._set_state(StreamState.FAILED)
                return error
            delay = self._backoff.next_delay()
            logger.warning("stream %s: %s; reconnecting in %.1f s", self.stream_id, error, delay)
            self._set_state(StreamState.BACKING_OFF)
            if self._stop.wait(delay):
                return None
            self._stats.reconnects += 1
        return None

    def _may_retry(self) -> bool:
        retries = self.config.max_retries
        return self.live and (retries is None or self._backoff.failures < retries)

    def _set_state(self, state: StreamState) -> None:
        if state is self.state:
            return
        self.state = state
        logger.info("stream %s: %s", self.stream_id, state.value)
        self._notify(state)

    # --- one connection --------------------------------------------------------------------------

    def _session(self) -> None:
        container = open_container(self.spec, self.config)
        try:
            stream = video_stream(container, self.spec)
            self._configure(stream)
            self._stats.connects += 1
            self._sampler.restart(1.0 / self._fps if self._fps else 0.0)
            self._clock.new_session()
            self._watchdog.reset(time.monotonic())
            self._decode(container, stream)
        finally:
            for chunk in self._chunker.flush():
                self._emit(chunk)
            container.close()

    def _configure(self, stream: av.VideoStream) -> None:
        if self.config.keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        # One thread per source is the cheapest per frame; more (0 = FFmpeg's choice) lowers latency
        # for one large stream at the cost of extra CPU and frame-threading delay.
        stream.thread_type = "AUTO" if self.config.decode_threads != 1 else "SLICE"
        stream.thread_count = self.config.decode_threads
        tb = stream.time_base
        self._start_s = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else 0.0

    def _decode(self, container: InputContainer, stream: av.VideoStream) -> None:
        """Read and decode until the source ends, the session fails or stalls, or `stop` is set.

        Reads block until a packet arrives; PyAV interrupts one only after `stall_seconds` (see
        `open_container`), which ends the session as a stall. Any error ends the session: after an
        interrupted read FFmpeg's RTSP demuxer cannot be read on reliably.
        """
        if self.live:
            for packet in self._read_backlog(container, stream):
                if self._stop.is_set() or not self._on_packet(packet):
                    return
        try:
            for packet in container.demux(stream):
                if self._stop.is_set() or not self._on_packet(packet):
                    return
                self._check_stall()
        except av.error.ExitError:
            if self._stop.is_set():
                return
            self._stalled()
        except (av.error.FFmpegError, OSError) as exc:
            raise translate_av_error(exc, self.spec) from None
        if not self.live:
            self._check_complete(stream)

    def _read_backlog(self, container: InputContainer, stream: av.VideoStream) -> list[av.Packet]:
        """Read the packets FFmpeg buffered while probing, up to the first that had to wait.

        That packet has just arrived, so it anchors the live clock and the backlog gets the times
        at which it was sent, not one burst of times at which it was read.
        """
        backlog: list[av.Packet] = []
        wait_s = max(BACKLOG_WAIT_MIN_S, BACKLOG_WAIT_FRACTION / self._fps) if self._fps else 0.01
        packets = container.demux(stream)
        try:
            while len(backlog) < MAX_BACKLOG:
                started = time.monotonic()
                backlog.append(next(packets))
                if time.monotonic() - started > wait_s and backlog[-1].pts is not None:
                    break
        except StopIteration:
            pass
        except av.error.ExitError:
            if not self._stop.is_set():
                self._stalled()
        except (av.error.FFmpegError, OSError) as exc:
            raise translate_av_error(exc, self.spec) from None
        self._fill_missing_pts(backlog, stream)
        last = next((p for p in reversed(backlog) if p.pts is not None and p.size), None)
        if last is not None and last.time_base:
            self._clock.anchor(float(last.pts * last.time_base), time.time())
        return backlog

    def _fill_missing_pts(self, packets: list[av.Packet], stream: av.VideoStream) -> None:
        """Give packets without PTS (typically the first of an RTSP session) the PTS before the next."""
        tb = stream.time_base
        if not self._fps or not tb:
            return
        step = max(1, round(1 / (self._fps * tb)))
        for i in range(len(packets) - 2, -1, -1):
            following = packets[i + 1].pts
            if packets[i].pts is None and following is not None:
                packets[i].pts = following - step

    def _check_stall(self) -> None:
        if self._watchdog.stalled(time.monotonic()):
            self._stalled()

    def _stalled(self) -> NoReturn:
        """End the session as stalled: no frame (or no packet at all) for `stall_seconds`."""
        self._stats.stalls += 1
        self._set_state(StreamState.STALLED)
        raise _Stalled(f"stalled: no frame for {self._watchdog.silent_for(time.monotonic()):.1f} s")

    def _check_complete(self, stream: av.VideoStream) -> None:
        """At the end of a recording: did the packets reach its stated duration?"""
        if stream.duration is None or not stream.time_base:
            return
        duration = float(stream.duration * stream.time_base)
        slack = max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * duration)
        if self._media_end < duration - slack:
            raise InvalidMediaError(
                f"truncated: media data ends at {self._media_end:.1f} s of {duration:.1f} s",
                uri=self.spec.masked,
            )

    # --- packets and frames ----------------------------------------------------------------------

    def _on_packet(self, packet: av.Packet) -> bool:
        if packet.size:
            self._packets += 1
            if packet.pts is not None and packet.time_base:
                end = packet.pts + (packet.duration or 0)
                self._media_end = max(self._media_end, float(end * packet.time_base) - self._start_s)
                if self.config.keyframes_only and packet.is_keyframe:
                    self._remember_keyframe(packet.pts)
        try:
            frames = packet.decode()
        except av.error.ExitError:
            raise
        except av.error.FFmpegError as exc:
            # Typical while joining a live stream mid-GOP, or on a damaged packet: skip it.
            self._stats.decode_errors += 1
            logger.debug("stream %s: packet skipped: %s", self.stream_id, type(exc).__name__)
            return True
        return all(self._on_frame(frame) for frame in frames)

    def _remember_keyframe(self, pts: int) -> None:
        self._key_packets[pts] = self._packets - 1
        if len(self._key_packets) > 64:  # the decoder holds a few frames at most
            del self._key_packets[next(iter(self._key_packets))]

    def _on_frame(self, frame: av.VideoFrame) -> bool:
        self._watchdog.feed(time.monotonic())
        self._stats.frames_decoded += 1
        self._stats.last_frame_at = time.time()
        index = self._frame_index(frame)
        if self.state is not StreamState.STREAMING:
            self._backoff.reset()
            self._set_state(StreamState.STREAMING)
        t = self._timestamp(frame, index)
        if not self._sampler.take(t):
            return True
        if self._pacer is not None:
            if not self._pacer.wait(t):
                return False
            self._watchdog.feed(time.monotonic())  # pacing is not a stall
        rgb = to_rgb(frame, self.config.max_side)
        self._stats.frames_sampled += 1
        return all(self._emit(chunk) for chunk in self._chunker.add(rgb, t, index))

    def _frame_index(self, frame: av.VideoFrame) -> int:
        self._decoded += 1
        index = self._decoded - 1
        if self.config.keyframes_only and frame.pts is not None:
            index = self._key_packets.pop(frame.pts, index)
        index = max(index, self._last_index + 1)
        self._last_index = index
        return index

    def _timestamp(self, frame: av.VideoFrame, index: int) -> float:
        pts_s = frame.time
        if self.live:
            return self._clock.stamp(pts_s, frame_duration=1.0 / self._fps if self._fps else 0.0)
        if pts_s is None:
            return index / self._fps if self._fps else float(index)
        return pts_s - self._start_s

    def _emit(self, chunk: Chunk) -> bool:
        self._stats.chunks += 1
        delivered = self._channel.send(chunk, self._stop)
        # Time spent waiting for the consumer is not a stall.
        self._watchdog.feed(time.monotonic())
        return delivered
