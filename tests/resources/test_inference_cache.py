"""The inference cache against a real redis-server: every record type survives the trip, nothing but
our own records decodes, a dead or dying Redis is a warning and misses (never an exception), and the
deploy config bounds memory with LRU eviction."""

from __future__ import annotations

import pickle
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dagster import EnvVar

from media_assets.analysis.faces import Face
from media_assets.analysis.ocr import OcrLine
from media_assets.analysis.poses import Pose
from media_assets.analysis.safety import SafetyLabel
from media_assets.analysis.tags import Tag
from media_assets.analysis.transcript import Segment, Transcript, Word
from resources import inference_cache
from resources.inference_cache import InferenceCache, ScopedCache
from tests.redis_server import RedisServer, free_port


def scope_of(url: str, warnings: list[str], asset: str = "ocr_text", **kw: Any) -> ScopedCache:
    scope = InferenceCache(url=url, **kw).scope(asset, "1-abcdef12", warnings.append, run_id="run-1")
    assert scope is not None
    return scope


def records() -> dict[str, list[Any]]:
    """One keyframe's results of every model family, with the value types the models produce."""
    keypoints = tuple((float(i), 2.5 * i, -0.125, np.float32(0.75).item()) for i in range(33))
    return {
        "ocr": [
            OcrLine("Größe & Übermaß", 0.987654321, (1.0, 2.0, 3.5, 2.0, 3.5, 9.0, 1.0, 9.0)),
            OcrLine("", 0.5, ()),
        ],
        "poses": [Pose(box=(10.0, 20.0, 110.0, 220.0), score=0.93, keypoints=keypoints)],
        "faces": [
            Face(
                box=(1.0, 2.0, 3.0, 4.0),
                score=float(np.float32(0.8)),
                embedding=tuple(float(x) for x in np.linspace(-1, 1, 128, dtype=np.float32)),
                landmarks=((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0)),
                thumbnail=bytes(range(256)) + b"\xff\xd8\x00",
            )
        ],
        "safety": [SafetyLabel("FACE_FEMALE", 0.61, (0.0, 1.0, 2.0, 3.0))],
        "tags": [Tag("tabby", 0.42, 281, "tabby, tabby cat"), Tag("lynx", 0.01, 287)],
        "empty": [],  # a keyframe without text is a hit too, not a miss
    }


def test_every_record_type_survives_redis(redis_server: RedisServer) -> None:
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings)
    values = records()
    scope.put_many(values)
    got = scope.get_many([*values, "never-stored"])
    assert got == [*values.values(), None]
    assert all(
        type(a) is type(b) for v, g in zip(values.values(), got, strict=False) for a, b in zip(v, g, strict=True)
    )
    assert isinstance(got[2][0].thumbnail, bytes) and isinstance(got[1][0].keypoints[0], tuple)
    assert scope.hits == len(values) and scope.misses == 1 and not warnings

    words = (Word(0.0, 0.4, " Good", 0.91), Word(0.4, 0.9, " morning.", 0.88))
    speech = Transcript("en", 0.99, 3.2, (Segment(0.0, 0.9, "Good morning.", -0.2, 0.01, words),))
    scope.put("audio-sha", speech)
    assert scope.get("audio-sha") == speech

    # numpy scalars become plain numbers of the same value; arrays keep dtype, shape and bytes
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([[1, -2]], dtype=">i8"), np.zeros((0, 3))]
    scope.put_many({"arr": arrays, "scalars": [np.float32(0.1), np.int64(7)]})
    back = scope.get("arr")
    assert back is not None
    assert [(a.dtype, a.shape) for a in back] == [(a.dtype, a.shape) for a in arrays]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
    assert scope.get("scalars") == [float(np.float32(0.1)), 7]

    # keys name the asset and model version, so another asset or version never reads these
    keys = sorted(k.decode() for k in redis_server.client().keys("*") if isinstance(k, bytes))
    assert all(k.startswith("medialens:v1:ocr_text:1-abcdef12:") for k in keys), keys
    other = InferenceCache(url=redis_server.url).scope("tags", "1-abcdef12")
    assert other is not None and other.get_many(list(values)) == [None] * len(values)
    assert 0 < redis_server.client().ttl(keys[0]) <= 30 * 24 * 3600


@dataclass(frozen=True)
class Embedding:
    """A record holding an array, as a future model might return."""

    vector: np.ndarray
    label: str


def test_a_record_with_an_array_field(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference_cache, "RECORD_MODULES", ("media_assets.analysis.", __name__))
    scope = scope_of(redis_server.url, [])
    vec = np.linspace(0, 1, 512, dtype=np.float16)
    scope.put("k", [Embedding(vec, "x")])
    (back,) = scope.get("k") or [None]
    assert isinstance(back, Embedding) and back.vector.dtype == np.float16 and np.array_equal(back.vector, vec)


def test_foreign_values_are_misses_never_code(redis_server: RedisServer) -> None:
    """Redis is not trusted: pickles, other programs' JSON and types outside the analysis records
    are misses (with one warning), and the recomputed result overwrites them."""
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings)
    r = redis_server.client()
    evil = {
        "pickle": pickle.dumps(Tag("x", 1.0, 1)),
        "not-json": b"\x00\x01garbage",
        "other-json": b'{"hello": "world"}',
        "os-system": b'{"v":1,"value":{"@type":"os:system","command":"touch /tmp/pwned"}}',
        "builtins": b'{"v":1,"value":[{"@type":"builtins:dict"}]}',
        "bad-field": b'{"v":1,"value":[{"@type":"media_assets.analysis.tags:Tag","label":1,"score":0.5,"class_id":1}]}',
        "extra-field": (
            b'{"v":1,"value":[{"@type":"media_assets.analysis.tags:Tag","label":"a","score":0.5,'
            b'"class_id":1,"__class__":"x"}]}'
        ),
        "bad-array": b'{"v":1,"value":{"@ndarray":{"dtype":"<f4","shape":[1000],"data":"AAAA"}}}',
        "object-array": b'{"v":1,"value":{"@ndarray":{"dtype":"|O","shape":[1],"data":"AAAAAAAAAAA="}}}',
    }
    for digest, raw in evil.items():
        r.set(scope.key(digest), raw)
    assert scope.get_many(list(evil)) == [None] * len(evil)
    assert len(warnings) == 1 and "unreadable" in warnings[0], warnings
    assert not Path("/tmp/pwned").exists()
    scope.put("pickle", [Tag("tabby", 0.4, 281)])
    assert scope.get("pickle") == [Tag("tabby", 0.4, 281)]


def test_disabled_without_url() -> None:
    cache = InferenceCache()
    assert not cache.enabled and cache.scope("tags", "1-x") is None
    assert cache.mget(["a", "b"]) == [None, None] and cache.mset({"a": b"1"}) is False


def test_a_dead_redis_is_one_warning_and_misses() -> None:
    inference_cache.reset_for_tests()
    warnings: list[str] = []
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    scope = scope_of(url, warnings)
    started = time.perf_counter()
    for _ in range(50):  # 50 batches of a run
        assert scope.get_many(["a", "b", "c"]) == [None, None, None]
        scope.put_many({"a": [Tag("x", 1.0, 1)]})
    assert time.perf_counter() - started < 2.0  # the breaker stops trying after the first failure
    assert len(warnings) == 1, warnings
    assert "unreachable" in warnings[0] or "failed" in warnings[0]
    assert "s3cret" not in warnings[0] and "127.0.0.1" in warnings[0]
    # another asset in the same run does not warn again; another run does (once)
    scope_of(url, warnings, asset="tags").get_many(["a"])
    assert len(warnings) == 1
    InferenceCache(url=url).scope("tags", "1-x", warnings.append, run_id="run-2").get_many(["a"])  # type: ignore[union-attr]
    assert len(warnings) == 2
    inference_cache.reset_for_tests()


def test_a_dying_redis_then_recovering(redis_server: RedisServer) -> None:
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings, retry_after_s=0.3)
    scope.put("a", [Tag("x", 1.0, 1)])
    assert scope.get("a") == [Tag("x", 1.0, 1)]
    redis_server.kill()
    assert scope.get_many(["a", "b"]) == [None, None]
    scope.put("b", [Tag("y", 1.0, 2)])
    assert len(warnings) == 1, warnings
    redis_server.start()  # same port, empty (no persistence)
    time.sleep(0.35)
    assert scope.get("a") is None  # reachable again: a real miss
    scope.put("a", [Tag("x", 1.0, 1)])
    assert scope.get("a") == [Tag("x", 1.0, 1)] and len(warnings) == 1


def test_deploy_config_bounds_memory_with_lru(redis_server: RedisServer) -> None:
    r = redis_server.client()
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert r.config_get("maxmemory") == {"maxmemory": str(512 * 1024 * 1024)}
    assert r.config_get("save") == {"save": ""} and r.config_get("appendonly") == {"appendonly": "no"}

    # A small limit to watch eviction. Redis's LRU clock ticks once a second, so the writes are a
    # second apart from the read that makes one old entry "recently used". Redis evicts the oldest of
    # a few sampled keys (5 by default), which now and then drops a new entry when only new ones
    # were sampled; sampling (nearly) every key makes which entries go first a property to assert.
    limit = 8 * 1024 * 1024
    r.config_set("maxmemory", str(limit))
    r.config_set("maxmemory-samples", "64")
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings, asset="faces")

    def face(i: int) -> list[Face]:
        return [Face((0.0, 0.0, 1.0, 1.0), 0.9, (0.0,) * 128, ((0.0, 0.0),) * 5, bytes([i % 256]) * 75_000)]

    old = {f"old-{i}": face(i) for i in range(20)}  # ~2 MB
    scope.put_many(old)
    time.sleep(1.2)
    assert scope.get("old-0") == face(0)  # read again: recently used
    new = {f"new-{i}": face(i) for i in range(48)}  # ~5 MB more: over the limit
    for i in range(0, 48, 4):
        scope.put_many(dict(list(new.items())[i : i + 4]))
    assert not warnings, warnings  # writes never fail: LRU makes room
    evicted, used = r.info("stats")["evicted_keys"], r.info("memory")["used_memory"]
    assert evicted > 0 and used <= limit, (evicted, used)
    assert scope.get("old-0") == face(0)  # the recently read entry stayed
    assert all(v is not None for v in scope.get_many(list(new))), (evicted, used)  # the newest are all there
    assert sum(v is None for v in scope.get_many(list(old))) >= 5  # untouched old entries went first


def test_redis_killed_mid_run_costs_one_warning_and_comes_back(redis_server: RedisServer) -> None:
    """Killed after the cache connected and served hits and misses in this process: the next lookups
    and stores are misses and no-ops at once (no exception, no wait on a dead socket), one warning
    per run, and once Redis is back after `retry_after_s` the cache works again."""
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings, retry_after_s=1.0)
    scope.put_many({"a": [Tag("x", 1.0, 1)], "b": [Tag("y", 1.0, 2)]})
    assert scope.get_many(["a", "b", "c"]) == [[Tag("x", 1.0, 1)], [Tag("y", 1.0, 2)], None]

    redis_server.kill()
    started = time.perf_counter()
    for _ in range(100):  # the rest of the run's batches: each computes
        assert scope.get_many(["a", "b"]) == [None, None]
        scope.put("c", [Tag("z", 1.0, 3)])
    assert time.perf_counter() - started < 2.0  # refused at once, then the breaker: no socket waits
    assert len(warnings) == 1 and "computing without the cache" in warnings[0], warnings
    assert scope.hits == 2 and scope.misses == 201 and scope.writes == 2

    redis_server.start()  # same port, empty (no persistence)
    time.sleep(1.1)  # the breaker tries again after retry_after_s
    scope.put("a", [Tag("x", 1.0, 1)])
    assert scope.get_many(["a", "b"]) == [[Tag("x", 1.0, 1)], None]
    assert len(warnings) == 1, warnings


def test_a_hung_redis_costs_one_socket_timeout_and_never_answers_out_of_turn(redis_server: RedisServer) -> None:
    """A Redis that stops answering (SIGSTOP: connections stay open, nothing comes back) costs one
    read timeout, then the breaker. When it resumes it answers the request that timed out; that reply
    must never be taken as the answer to a later lookup."""
    assert redis_server.proc is not None
    warnings: list[str] = []
    scope = scope_of(redis_server.url, warnings, retry_after_s=1.0, socket_timeout_s=0.5)
    scope.put_many({"a": [Tag("x", 1.0, 1)], "b": [Tag("y", 1.0, 2)]})
    assert scope.get("a") == [Tag("x", 1.0, 1)]

    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.perf_counter()
        for _ in range(50):
            assert scope.get_many(["a"]) == [None]
            scope.put("c", [Tag("z", 1.0, 3)])
        assert time.perf_counter() - started < 2.0  # one 0.5 s timeout, then no tries until retry_after_s
        assert len(warnings) == 1 and "Timeout" in warnings[0], warnings
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    time.sleep(1.1)
    # the reply to the timed-out GET of "a" is still on its way: "b" must read as "b"
    assert scope.get_many(["b"]) == [[Tag("y", 1.0, 2)]]
    assert scope.get_many(["a", "b"]) == [[Tag("x", 1.0, 1)], [Tag("y", 1.0, 2)]]
    assert len(warnings) == 1, warnings


def test_an_unresolved_env_var_url_is_read_outside_a_run(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_resources passes EnvVar("REDIS_URL"), which only Dagster resolves; used directly, the
    cache still reaches that Redis (and can name it in a warning)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    cache = InferenceCache(url=EnvVar("REDIS_URL"))
    assert cache.target == redis_server.url
    scope = cache.scope("tags", "1-x")
    assert scope is not None
    scope.put("k", [Tag("x", 1.0, 1)])
    assert scope.get("k") == [Tag("x", 1.0, 1)]
