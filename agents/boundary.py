"""The agent's RPC boundary, in front of every method of every service:

* the token, checked before a request's message is read;
* a concurrency limit per method class (uploads, runs, control, cancel,
  health checks, health watches): a flood of one kind never starves another,
  so Health, Describe and Cancel keep answering while every upload and run
  slot is taken;
* a message limit per method, checked on the raw bytes before protobuf
  parses them;
* server-side deadlines: a request message must arrive within a bound, and a
  watchdog cancels calls past their deadline even while a handler is blocked
  writing to a client that stopped reading.

gRPC's Python server has one receive limit for all methods
(`grpc.max_receive_message_length`; core refuses a larger message from its
length prefix, before buffering it). It is set to the largest legitimate
message, a job with its probes; each method's own, smaller limit is checked
here. Unary requests are served through request-streaming handlers (the wire
format is the same: one message, then half-close), so a request is read only
once its call has been admitted: a refused call never has its message read.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

import grpc


@dataclass(frozen=True)
class MethodClass:
    name: str  # how a refusal names the class ("upload", "run", ...)
    limit: int  # calls of this class in progress at once
    max_message: int  # bytes per request message


class MessageTooLarge(Exception):
    """A streamed request message above its method's limit (raised by the
    request iterator; the handler cleans up and answers with this text)."""


class _Oversize:
    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size


class Watchdog:
    """Cancels calls whose server-side deadline has passed. `context.cancel()`
    ends the call and wakes a handler blocked on the call (reading a request
    that never comes, writing to a client that never reads)."""

    def __init__(self, tick_s: float, clock: Callable[[], float] = time.monotonic):
        self.tick_s, self.clock = tick_s, clock
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[float, grpc.ServicerContext]] = {}
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rpc-watchdog")
        self._thread.start()

    def watch(self, context: grpc.ServicerContext, seconds: float) -> int:
        with self._lock:
            self._next += 1
            self._calls[self._next] = (self.clock() + seconds, context)
            return self._next

    def release(self, token: int) -> None:
        with self._lock:
            self._calls.pop(token, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = self.clock()
            with self._lock:
                due = [k for k, (deadline, _) in self._calls.items() if deadline <= now]
                expired = [self._calls.pop(k)[1] for k in due]
            for context in expired:
                context.cancel()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(self.tick_s + 1)


class Boundary(grpc.ServerInterceptor):
    def __init__(self, classes: Mapping[str, MethodClass], default: MethodClass, token: Optional[str],
                 watchdog: Watchdog, receive_s: float, open_prefixes: tuple[str, ...] = ("/grpc.health.v1.Health/",)):
        self.classes, self.default = dict(classes), default
        self._expected = f"Bearer {token}".encode() if token else None
        self.watchdog, self.receive_s = watchdog, receive_s
        self.open_prefixes = open_prefixes
        self._slots = {c.name: threading.BoundedSemaphore(c.limit) for c in [*self.classes.values(), default]}
        self._serving = 0  # admitted calls in progress, health checks aside
        self._serving_lock = threading.Lock()

    def serving(self) -> int:
        """Calls being served now, other than health checks and watches
        (a controller may hold a health watch open for as long as it runs)."""
        return self._serving

    def _count(self, step: int) -> None:
        with self._serving_lock:
            self._serving += step

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        cls = self.classes.get(method, self.default)
        why = self._unauthorized(details)
        return self._wrap(handler, cls, method.rsplit("/", 1)[-1], why, not method.startswith(self.open_prefixes))

    # -- checks -----------------------------------------------------------------------
    def _unauthorized(self, details) -> Optional[str]:
        """Why this call is refused a token check, or None. The token is
        compared in constant time and never logged; health probes are open."""
        if self._expected is None or details.method.startswith(self.open_prefixes):
            return None
        given = ""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
        if hmac.compare_digest(given.encode("utf-8", "replace"), self._expected):
            return None
        why = "missing authorization metadata" if not given else "invalid token"
        return f"{why}: this agent requires a token (--token-file)"

    def _admit(self, context, cls: MethodClass, name: str, unauthorized: Optional[str]) -> threading.Semaphore:
        if unauthorized:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, unauthorized)
        slots = self._slots[cls.name]
        if not slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{name}: {cls.limit} {cls.name} calls are in progress, the limit of this agent for "
                          f"its {cls.name} class; retry later (other classes are not affected)")
        return slots

    def _first(self, requests: Iterator, context, cls: MethodClass, name: str):
        """The one message of a unary request, within the receive deadline."""
        token = self.watchdog.watch(context, self.receive_s)
        try:
            request = next(requests, None)
        finally:
            self.watchdog.release(token)
        if request is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: the request carried no message")
        if isinstance(request, _Oversize):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _too_large(name, request.size, cls))
        return request

    # -- handlers ---------------------------------------------------------------------
    def _wrap(self, h: grpc.RpcMethodHandler, cls: MethodClass, name: str, unauthorized: Optional[str],
              counted: bool):
        parse = h.request_deserializer

        def deserialize(raw: bytes):
            if len(raw) > cls.max_message:
                return _Oversize(len(raw))
            return parse(raw) if parse else raw

        def requests(raw_requests: Iterator):
            for m in raw_requests:
                if isinstance(m, _Oversize):
                    raise MessageTooLarge(_too_large(name, m.size, cls))
                yield m

        if h.request_streaming:
            behavior = h.stream_unary or h.stream_stream

            def request_of(raw, context):
                return requests(raw)
        else:
            behavior = h.unary_unary or h.unary_stream

            def request_of(raw, context):
                return self._first(raw, context, cls, name)

        step = 1 if counted else 0

        if not h.response_streaming:
            def unary(raw, context):
                slots = self._admit(context, cls, name, unauthorized)
                self._count(step)
                try:
                    return behavior(request_of(raw, context), context)
                finally:
                    self._count(-step)
                    slots.release()

            return grpc.stream_unary_rpc_method_handler(unary, request_deserializer=deserialize,
                                                        response_serializer=h.response_serializer)

        def streaming(raw, context):
            slots = self._admit(context, cls, name, unauthorized)
            self._count(step)
            try:
                yield from behavior(request_of(raw, context), context)
            finally:
                self._count(-step)
                slots.release()

        return grpc.stream_stream_rpc_method_handler(streaming, request_deserializer=deserialize,
                                                     response_serializer=h.response_serializer)


def _too_large(name: str, size: int, cls: MethodClass) -> str:
    return (f"{name}: a request message of {size} bytes is above this method's limit of {cls.max_message} "
            f"bytes")
