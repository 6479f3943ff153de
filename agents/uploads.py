"""UploadModel on the agent: a client stream of chunks into the model cache,
held to a bytes-per-second floor.

gRPC's request iterator blocks without a timeout, so a stream that sends its
header and then nothing would hold its slot for as long as the client keeps
the connection. The stream is read on a helper thread instead, one message
ahead at most, and the handler checks each window of `window_s` seconds:
fewer than `floor_bytes_s * window_s` bytes in a window ends the stream with
DEADLINE_EXCEEDED (its committed bytes are kept for a resume, and expire if
nobody resumes).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Iterator, Optional

import grpc

from agents import inbound
from agents.boundary import MessageTooLarge
from agents.cache import ModelCache, UploadError
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import limits

log = logging.getLogger("harness.agent")


class Stalled(Exception):
    pass


class Paced:
    """A request iterator read on a helper thread, with a rate floor."""

    def __init__(self, requests: Iterator, floor_bytes_s: float, window_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.floor, self.window, self.clock = floor_bytes_s, window_s, clock
        self._q: "queue.Queue[tuple[str, object]]" = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._window_end = clock() + window_s
        self._window_bytes = 0
        threading.Thread(target=self._read, args=(requests,), daemon=True, name="upload-reader").start()

    def _read(self, requests: Iterator) -> None:
        try:
            for m in requests:
                if not self._put(("message", m)):
                    return
            self._put(("end", None))
        except Exception as exc:  # the call ended (client gone, cancelled) or a message was too large
            self._put(("error", exc))

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=limits.EVENT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> Optional[pb.UploadChunk]:
        """The next message, None at the end of the stream; raises Stalled,
        MessageTooLarge or the call's own error."""
        while True:
            now = self.clock()
            if now >= self._window_end:
                if self._window_bytes < self.floor * self.window:
                    raise Stalled(f"{self._window_bytes} bytes in the last {self.window:g} s, below this agent's "
                                  f"floor of {self.floor:g} bytes/s (upload_floor_bytes_s)")
                self._window_end, self._window_bytes = now + self.window, 0
            try:
                kind, item = self._q.get(timeout=max(0.0, self._window_end - now))
            except queue.Empty:
                continue
            if kind == "message":
                self._window_bytes += len(item.data)
                return item
            if kind == "end":
                return None
            raise item

    def close(self) -> None:
        self._closed.set()


def receive(cache: ModelCache, requests: Iterator, context, floor_bytes_s: float,
            window_s: float) -> pb.UploadModelResponse:
    chunks = Paced(requests, floor_bytes_s, window_s)
    try:
        return _receive(cache, chunks, context)
    finally:
        chunks.close()


def _abort(context, code: str, message: str):
    context.abort(getattr(grpc.StatusCode, code), message)


def _receive(cache: ModelCache, chunks: Paced, context) -> pb.UploadModelResponse:
    try:
        first = chunks.next()
    except MessageTooLarge as exc:
        _abort(context, "RESOURCE_EXHAUSTED", f"{exc}: upload chunks are at most {limits.CHUNK_BYTES} bytes of data")
    except Stalled as exc:
        _abort(context, "DEADLINE_EXCEEDED", f"upload: {exc}")
    if first is None:
        _abort(context, "INVALID_ARGUMENT", "empty upload: the first message must carry the header")
    if not first.HasField("header"):
        _abort(context, "INVALID_ARGUMENT", "the first upload message must carry the header")
    h = first.header
    try:
        inbound.header(h, cache.max_model_bytes)
    except inbound.Refused as exc:
        _abort(context, exc.code, str(exc))
    if cache.path(h.digest) is not None:
        return pb.UploadModelResponse(digest=h.digest, already_present=True, received_bytes=0)
    try:
        up = cache.begin(h.digest, h.size_bytes, h.format, h.offset)
    except UploadError as exc:
        _abort(context, exc.code, str(exc))
    received = 0
    chunk = first
    try:
        while chunk is not None:
            if len(chunk.data) > limits.CHUNK_BYTES:
                up.abort(discard=True)
                _abort(context, "INVALID_ARGUMENT", f"chunk of {len(chunk.data)} bytes exceeds the "
                                                    f"{limits.CHUNK_BYTES}-byte limit; upload discarded")
            if chunk is not first and chunk.HasField("header"):
                up.abort(discard=True)
                _abort(context, "INVALID_ARGUMENT", "only the first upload message may carry a header; "
                                                    "upload discarded")
            up.write(chunk.data)
            received += len(chunk.data)
            chunk = chunks.next()
    except UploadError as exc:  # already discarded by the cache
        _abort(context, exc.code, str(exc))
    except MessageTooLarge as exc:
        up.abort(discard=True)
        _abort(context, "RESOURCE_EXHAUSTED", f"{exc}: upload chunks are at most {limits.CHUNK_BYTES} bytes of "
                                              "data; upload discarded")
    except Stalled as exc:
        up.abort(discard=False)
        _abort(context, "DEADLINE_EXCEEDED", f"upload of {h.digest[:12]}: {exc}; the {up.received} bytes "
                                             f"received are kept, resume with offset={up.received}")
    except Exception:
        # The client went away (or the disk failed): keep the committed
        # bytes for a resume; abort() is idempotent after a discard above.
        up.abort(discard=False)
        raise
    try:
        up.finish()
    except UploadError as exc:
        _abort(context, exc.code, str(exc))
    log.info("model %s committed (%d bytes)", h.digest[:12], h.size_bytes)
    return pb.UploadModelResponse(digest=h.digest, already_present=False, received_bytes=received)
