"""Uploads that outlive the file_uploader widget, which forgets its files when the user switches page.

A session keeps small records in its session state (sha256 of the bytes, the shown name, the size);
the bytes sit in one bounded, process-wide cache addressed by their sha256. A session only asks for
digests listed in its own state, so sessions never see each other's files (identical bytes are held
once). Only uploads the loader accepted are kept; when the cache has evicted one (it holds at most
``MAX_CACHE_BYTES``), the picker says so and asks for the file again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass

from components.escaping import plain_name

MAX_CACHE_BYTES = 128 * 2**20  # all sessions together; least recently used bytes go first
TTL_SECONDS = 30 * 60  # bytes not asked for this long are dropped (memory returns after sessions end)
MAX_KEPT_PER_SESSION = 8  # records per session (oldest forgotten first)


@dataclass(frozen=True)
class KeptUpload:
    sha256: str  # of the raw bytes: the cache key
    name: str  # plain_name() of the upload: never the raw name
    size: int  # bytes
    kind: str = ""  # the loader's sniff of the bytes ("png", "jpeg", "dicom"): not sniffed again


class ByteCache:
    """A thread-safe LRU of bytes by sha256, bounded by total size."""

    def __init__(self, max_bytes: int, ttl: float = TTL_SECONDS, clock=time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._used: dict[str, float] = {}  # sha -> last put/get time
        self._lock = threading.Lock()

    def _expire(self) -> None:  # caller holds the lock; least recently used first, so stop at a fresh one
        now = self._clock()
        while self._items:
            sha = next(iter(self._items))
            if now - self._used[sha] <= self.ttl:
                break
            self._items.popitem(last=False)
            del self._used[sha]

    def put(self, sha: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return  # never held; the picker asks for the file again if it is needed after a page switch
        with self._lock:
            self._expire()
            self._items[sha] = data
            self._items.move_to_end(sha)
            self._used[sha] = self._clock()
            while sum(len(v) for v in self._items.values()) > self.max_bytes:
                old, _ = self._items.popitem(last=False)
                del self._used[old]

    def get(self, sha: str) -> bytes | None:
        with self._lock:
            self._expire()
            data = self._items.get(sha)
            if data is not None:
                self._items.move_to_end(sha)
                self._used[sha] = self._clock()
            return data

    def __len__(self) -> int:
        return len(self._items)


CACHE = ByteCache(MAX_CACHE_BYTES)


def _records_key(key: str) -> str:
    return f"{key}_kept_uploads"


def kept_uploads(state: MutableMapping, key: str) -> list[KeptUpload]:
    """This session's kept uploads, oldest first."""
    return list(state.get(_records_key(key), []))


def keep_upload(
    state: MutableMapping, key: str, data: bytes, name: str, sha256: str | None = None, kind: str = ""
) -> KeptUpload:
    """Remember an accepted upload (bytes in the cache, a small record in ``state``); returns the record.
    ``sha256`` / ``kind``: the digest and sniff of ``data`` the caller has already (one of each per upload)."""
    sha = sha256 or hashlib.sha256(data).hexdigest()
    CACHE.put(sha, data)
    records = kept_uploads(state, key)
    for rec in records:
        if rec.sha256 == sha:
            return rec
    rec = KeptUpload(sha256=sha, name=plain_name(name), size=len(data), kind=kind)
    state[_records_key(key)] = (records + [rec])[-MAX_KEPT_PER_SESSION:]
    return rec


def forget_uploads(state: MutableMapping, key: str, shas: set[str]) -> None:
    """Drop records (the user removed those files from the uploader); the cache evicts the bytes later."""
    state[_records_key(key)] = [r for r in kept_uploads(state, key) if r.sha256 not in shas]


def upload_bytes(rec: KeptUpload) -> bytes | None:
    """The bytes of a kept upload, or None once the cache has evicted them."""
    return CACHE.get(rec.sha256)
