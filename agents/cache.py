"""Content-addressed model cache: files named by the SHA-256 of their bytes.

Uploads append to `partial/<digest>` (so an interrupted upload resumes from
the committed size), are checked against the declared size as they arrive,
and are verified and atomically renamed into `models/<digest>` when complete.
A mismatch deletes the partial file: nothing unverified is ever servable.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Optional

from harness.kernel.formats import MODEL_FORMATS

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class UploadError(Exception):
    """`code` is the gRPC status name the servicer answers with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def valid_digest(digest: str) -> bool:
    return bool(_DIGEST.match(digest or ""))


class ModelCache:
    def __init__(self, root: Path, max_model_bytes: int):
        self.root = Path(root)
        self.models = self.root / "models"
        self.partial = self.root / "partial"
        self.models.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)
        self.max_model_bytes = max_model_bytes
        self._lock = threading.Lock()
        self._uploading: set[str] = set()

    def path(self, digest: str) -> Optional[Path]:
        if not valid_digest(digest):
            return None
        p = self.models / digest
        return p if p.is_file() else None

    def committed(self, digest: str) -> int:
        p = self.partial / digest
        try:
            return p.stat().st_size
        except OSError:
            return 0

    def missing(self, digests: list[str]) -> list[tuple[str, int]]:
        out = []
        for d in digests:
            if not valid_digest(d):
                raise UploadError("INVALID_ARGUMENT", f"digest {d[:80]!r}: expected 64 lowercase hex characters (sha256)")
            if self.path(d) is None:
                out.append((d, self.committed(d)))
        return out

    def begin(self, digest: str, size: int, fmt: str, offset: int) -> "Upload":
        if not valid_digest(digest):
            raise UploadError("INVALID_ARGUMENT", f"digest {digest[:80]!r}: expected 64 lowercase hex characters (sha256)")
        if fmt not in MODEL_FORMATS:
            raise UploadError("INVALID_ARGUMENT", f"format {fmt[:40]!r}: expected one of {sorted(MODEL_FORMATS)}")
        if size > self.max_model_bytes:
            raise UploadError("RESOURCE_EXHAUSTED",
                              f"declared size {size} bytes exceeds this agent's model limit of {self.max_model_bytes} bytes")
        if size <= 0:
            raise UploadError("INVALID_ARGUMENT", "declared size must be positive")
        with self._lock:
            if digest in self._uploading:
                raise UploadError("ABORTED", f"an upload of {digest[:12]} is already in progress")
            self._uploading.add(digest)
        try:
            committed = self.committed(digest)
            if offset != committed:
                raise UploadError("FAILED_PRECONDITION",
                                  f"upload offset {offset} does not match the {committed} bytes committed; resume from {committed}")
            if committed > size:
                (self.partial / digest).unlink(missing_ok=True)
                raise UploadError("INVALID_ARGUMENT", "partial upload is larger than the declared size; discarded")
            return Upload(self, digest, size)
        except Exception:
            self._release(digest)
            raise

    def _release(self, digest: str) -> None:
        with self._lock:
            self._uploading.discard(digest)


class Upload:
    def __init__(self, cache: ModelCache, digest: str, size: int):
        self.cache, self.digest, self.size = cache, digest, size
        self.part = cache.partial / digest
        self.fh = open(self.part, "ab")
        self.received = self.fh.tell()

    def write(self, data: bytes) -> None:
        if self.received + len(data) > self.size:
            self.abort(discard=True)
            raise UploadError("INVALID_ARGUMENT",
                              f"received more than the declared {self.size} bytes; upload discarded")
        self.fh.write(data)
        self.received += len(data)

    def finish(self) -> Path:
        """Verify and commit; on any mismatch nothing is left behind."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.received < self.size:
            # Not corrupt, only short: keep the bytes so the sender can resume.
            self.cache._release(self.digest)
            raise UploadError("INVALID_ARGUMENT",
                              f"incomplete upload: declared {self.size} bytes, received {self.received}; "
                              f"the received bytes are kept, resume with offset={self.received}")
        try:
            h = hashlib.sha256()
            with open(self.part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != self.digest:
                raise UploadError("INVALID_ARGUMENT",
                                  f"digest mismatch: declared {self.digest}, content hashes to {h.hexdigest()}")
            final = self.cache.models / self.digest
            os.replace(self.part, final)
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
            self.cache._release(self.digest)
