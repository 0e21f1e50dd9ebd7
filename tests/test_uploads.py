"""components.uploads: the bounded byte cache and the per-session records that outlive a page switch."""

from __future__ import annotations

import hashlib

from components import uploads
from components.uploads import ByteCache, forget_uploads, keep_upload, kept_uploads, upload_bytes


def test_byte_cache_is_bounded_and_least_recently_used_goes_first():
    cache = ByteCache(max_bytes=250)
    for i in range(3):
        cache.put(f"k{i}", bytes([i]) * 100)  # 300 bytes offered, 250 allowed
    assert cache.get("k0") is None and cache.get("k1") is not None and len(cache) == 2
    cache.get("k1")  # k1 now most recent: k2 goes next
    cache.put("k3", b"x" * 100)
    assert cache.get("k2") is None and cache.get("k1") == bytes([1]) * 100
    cache.put("huge", b"x" * 1000)  # larger than the whole cache: never held, nothing evicted for it
    assert cache.get("huge") is None and cache.get("k1") is not None


def test_keep_dedupes_and_records_only_small_values(monkeypatch):
    monkeypatch.setattr(uploads, "CACHE", ByteCache(10_000))
    state: dict = {}
    rec = keep_upload(state, "cmp", b"abc" * 10, "C:\\fakepath\\[link](x).png")
    again = keep_upload(state, "cmp", b"abc" * 10, "other name.png")
    assert rec == again and len(kept_uploads(state, "cmp")) == 1
    assert rec.sha256 == hashlib.sha256(b"abc" * 10).hexdigest()
    assert rec.name == "[link](x).png" and rec.size == 30
    assert all(not isinstance(v, bytes) for v in state.values())  # no bytes in session state
    assert upload_bytes(rec) == b"abc" * 10
    forget_uploads(state, "cmp", {rec.sha256})
    assert kept_uploads(state, "cmp") == []


def test_sessions_see_only_their_own_uploads(monkeypatch):
    monkeypatch.setattr(uploads, "CACHE", ByteCache(10_000))
    alice, bob = {}, {}
    keep_upload(alice, "cmp", b"alice's study", "a.png")
    keep_upload(bob, "cmp", b"bob's study", "b.png")
    assert [r.name for r in kept_uploads(alice, "cmp")] == ["a.png"]
    assert [r.name for r in kept_uploads(bob, "cmp")] == ["b.png"]


def test_per_session_records_are_bounded(monkeypatch):
    monkeypatch.setattr(uploads, "CACHE", ByteCache(10_000))
    state: dict = {}
    for i in range(uploads.MAX_KEPT_PER_SESSION + 3):
        keep_upload(state, "cmp", f"file {i}".encode(), f"f{i}.png")
    names = [r.name for r in kept_uploads(state, "cmp")]
    assert len(names) == uploads.MAX_KEPT_PER_SESSION
    assert names[-1] == f"f{uploads.MAX_KEPT_PER_SESSION + 2}.png"  # the oldest were forgotten


def test_cache_drops_bytes_not_used_within_the_ttl():
    now = [0.0]
    cache = ByteCache(max_bytes=10_000, ttl=60, clock=lambda: now[0])
    cache.put("a", b"x" * 10)
    now[0] = 30
    cache.put("b", b"y" * 10)
    now[0] = 50
    assert cache.get("a") == b"x" * 10  # used again: its clock restarts
    now[0] = 100  # b last used at 30 (70 s ago), a at 50 (50 s ago)
    assert cache.get("b") is None and cache.get("a") == b"x" * 10
    now[0] = 200
    assert cache.get("a") is None and len(cache) == 0
