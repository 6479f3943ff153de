"""Content-addressed model cache: files named by the SHA-256 of their bytes.

Uploads append to `partial/<digest>` (so an interrupted upload resumes from
the committed size), are checked against the declared size as they arrive,
and are verified and atomically renamed into `models/<digest>` when complete.
A mismatch deletes the partial file: nothing unverified is ever servable.

The cache is bounded on disk. Committed models, partial uploads and the rest
of every upload in progress count against a quota; an upload that would pass
it first evicts abandoned partial uploads (oldest first), then models that no
queued or running job needs (least recently used first), and is refused when
that is not enough. Abandoned partial uploads expire. The disk itself always
keeps a reserve free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from harness.kernel import limits
from harness.kernel.formats import MODEL_FORMATS
from harness.kernel.modelfile import hash_file

from agents.inbound import DIGEST


class UploadError(Exception):
    """`code` is the gRPC status name the servicer answers with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def valid_digest(digest: str) -> bool:
    return bool(DIGEST.fullmatch(digest or ""))


class ModelCache:
    def __init__(self, root: Path, max_model_bytes: int, quota_bytes: int = limits.CACHE_QUOTA_BYTES,
                 partial_ttl_s: float = limits.PARTIAL_UPLOAD_TTL_S,
                 pinned: Callable[[], set[str]] = set, wall: Callable[[], float] = time.time):
        self.root = Path(root)
        self.models = self.root / "models"
        self.partial = self.root / "partial"
        self.models.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self.max_model_bytes = max_model_bytes
        self.quota_bytes = quota_bytes
        self.partial_ttl_s = partial_ttl_s
        self.pinned = pinned
        self.wall = wall
        self._lock = threading.Lock()
        self._uploading: dict[str, int] = {}  # digest -> declared size, while its stream is open
        # Last use of each model (a job that named it, or its upload): the
        # eviction order. Models found at start count as used when written.
        self._used: dict[str, float] = {p.name: p.stat().st_mtime for p in self._files(self.models)}

    # -- lookups ----------------------------------------------------------------
    def path(self, digest: str) -> Optional[Path]:
        if not valid_digest(digest):
            return None
        p = self.models / digest
        return p if p.is_file() else None

    def use(self, digest: str) -> Optional[Path]:
        """The model's path, marking it used now (it is then the last to be evicted)."""
        p = self.path(digest)
        if p is not None:
            with self._lock:
                self._used[digest] = self.wall()
        return p

    def committed(self, digest: str) -> int:
        try:
            return (self.partial / digest).stat().st_size
        except OSError:
            return 0

    def missing(self, digests: Iterable[str]) -> list[tuple[str, int]]:
        """(digest, committed bytes) for each digest the cache does not hold;
        digests must already be validated."""
        return [(d, self.committed(d)) for d in digests if self.path(d) is None]

    # -- uploads ----------------------------------------------------------------
    def begin(self, digest: str, size: int, fmt: str, offset: int) -> "Upload":
        if not valid_digest(digest):
            raise UploadError("INVALID_ARGUMENT", f"digest {digest[:80]!r}: expected 64 lowercase hex characters (sha256)")
        if fmt not in MODEL_FORMATS:
            raise UploadError("INVALID_ARGUMENT", f"format {fmt[:40]!r}: expected one of {sorted(MODEL_FORMATS)}")
        if size > self.max_model_bytes:
            raise UploadError("RESOURCE_EXHAUSTED",
                              f"header.size_bytes={size}: above this agent's model limit of {self.max_model_bytes} "
                              "bytes (max_model_mb)")
        if size > self.quota_bytes:
            raise UploadError("RESOURCE_EXHAUSTED",
                              f"header.size_bytes={size}: above this agent's cache quota of {self.quota_bytes} "
                              "bytes (cache_quota_mb)")
        if size <= 0:
            raise UploadError("INVALID_ARGUMENT", "header.size_bytes: expected the model's size in bytes")
        with self._lock:
            if digest in self._uploading:
                raise UploadError("ABORTED", f"an upload of {digest[:12]} is already in progress")
            self._uploading[digest] = size
        try:
            self.expire_partials()
            committed = self.committed(digest)
            if offset != committed:
                raise UploadError("FAILED_PRECONDITION",
                                  f"upload offset {offset} does not match the {committed} bytes committed; resume from {committed}")
            if committed > size:
                (self.partial / digest).unlink(missing_ok=True)
                raise UploadError("INVALID_ARGUMENT", "partial upload is larger than the declared size; discarded")
            self._make_room(digest, size - committed)
            return Upload(self, digest, size)
        except Exception:
            self._release(digest)
            raise

    def _release(self, digest: str) -> None:
        with self._lock:
            self._uploading.pop(digest, None)

    # -- bounds -----------------------------------------------------------------
    @staticmethod
    def _files(folder: Path) -> list[Path]:
        try:
            return [p for p in folder.iterdir() if p.is_file()]
        except OSError:
            return []

    def _held(self, exclude: str) -> int:
        """Bytes on disk plus the rest of every other upload in progress."""
        held = 0
        for p in self._files(self.models) + self._files(self.partial):
            try:
                held += p.stat().st_size
            except OSError:
                pass
        with self._lock:
            uploading = dict(self._uploading)
        for d, size in uploading.items():
            if d != exclude:
                held += max(0, size - self.committed(d))
        return held

    def _make_room(self, digest: str, need: int) -> None:
        """Evict until `need` more bytes fit the quota and the disk's reserve."""
        freed = 0

        def short() -> int:
            over_quota = held + need - freed - self.quota_bytes
            free = shutil.disk_usage(self.root).free - limits.DISK_FREE_RESERVE_BYTES
            return max(over_quota, need - free)

        held = self._held(digest)
        if short() <= 0:
            return
        with self._lock:
            busy = set(self._uploading)
            used = dict(self._used)
        pinned = self.pinned()
        stale = sorted((p for p in self._files(self.partial) if p.name not in busy), key=_mtime)
        idle = sorted((p for p in self._files(self.models) if p.name not in pinned),
                      key=lambda p: used.get(p.name, 0.0))
        for victim in stale + idle:
            try:
                size = victim.stat().st_size
            except OSError:
                continue
            victim.unlink(missing_ok=True)
            freed += size
            with self._lock:
                self._used.pop(victim.name, None)
            if short() <= 0:
                return
        raise UploadError("RESOURCE_EXHAUSTED",
                          f"cache quota: {need} more bytes do not fit in {self.quota_bytes} bytes (cache_quota_mb) "
                          f"with {limits.DISK_FREE_RESERVE_BYTES // limits.MiB} MiB of the disk kept free, even after "
                          "evicting every model no queued or running job needs")

    def expire_partials(self) -> int:
        """Remove partial uploads nobody has written to for partial_ttl_s."""
        now = self.wall()
        with self._lock:
            busy = set(self._uploading)
        gone = 0
        for p in self._files(self.partial):
            if p.name not in busy and now - _mtime(p) > self.partial_ttl_s:
                p.unlink(missing_ok=True)
                gone += 1
        return gone


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


class Upload:
    def __init__(self, cache: ModelCache, digest: str, size: int):
        self.cache, self.digest, self.size = cache, digest, size
        self.part = cache.partial / digest
        self.fh = open(self.part, "ab")
        self.received = self.fh.tell()
        # Hashed as the bytes arrive (hashlib drops the GIL on large
        # updates), not re-read at the end: that was 0.15 s of a 200 MB
        # upload's tail. A resumed upload hashes what it already holds first.
        self._hash = hash_file(self.part, hashlib.sha256()) if self.received else hashlib.sha256()

    def write(self, data: bytes) -> None:
        if self.received + len(data) > self.size:
            self.abort(discard=True)
            raise UploadError("INVALID_ARGUMENT",
                              f"received more than the declared {self.size} bytes; upload discarded")
        self.fh.write(data)
        self._hash.update(data)
        self.received += len(data)

    def finish(self) -> Path:
        """Verify and commit; on any mismatch nothing is left behind."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.received < self.size:
            # Not corrupt, only short: keep the bytes so the sender can resume.
            self._drop_if_empty()
            self.cache._release(self.digest)
            raise UploadError("INVALID_ARGUMENT",
                              f"incomplete upload: declared {self.size} bytes, received {self.received}; "
                              f"the received bytes are kept, resume with offset={self.received}")
        try:
            got = self._hash.hexdigest()
            if got != self.digest:
                raise UploadError("INVALID_ARGUMENT",
                                  f"digest mismatch: declared {self.digest}, content hashes to {got}")
            final = self.cache.models / self.digest
            os.replace(self.part, final)
            with self.cache._lock:
                self.cache._used[self.digest] = self.cache.wall()
            return final
        except UploadError:
            self.part.unlink(missing_ok=True)
            raise
        finally:
            self.cache._release(self.digest)

    def abort(self, discard: bool) -> None:
        """Stream ended early: keep committed bytes for a resume unless told not to."""
        try:
            self.fh.close()
        finally:
            if discard:
                self.part.unlink(missing_ok=True)
            else:
                self._drop_if_empty()
            self.cache._release(self.digest)

    def _drop_if_empty(self) -> None:
        # Nothing to resume from: a header-only stream leaves no file.
        if self.received == 0:
            self.part.unlink(missing_ok=True)
