"""A Redis cache of model results, so a re-run of unchanged inputs skips inference.

A retried run, a re-materialised partition or the same keyframe in another upload would run the
same model on the same bytes again; OCR alone costs ~350 ms per keyframe (FACTS.md). Results are
stored under (asset, model version, sha256 of the input file): the version already hashes the
asset's settings and weight files, so a new threshold or new weights never read old results.

The cache is an optimisation, never a dependency: an empty `url` disables it, and a Redis that is
unreachable, slow or dying costs at most one short socket timeout per `retry_after_s` (a circuit
breaker per process), one warning in the run's log, and the run computes everything itself. The
breaker closes again by itself: the first try after `retry_after_s` that succeeds uses the cache
again, for the rest of that run too. A connection that failed or timed out is dropped (redis-py
disconnects it), so the late reply of a hung Redis is never read as the answer to another lookup.

Redis contents are not trusted code, so values are JSON, never pickle: a record is decoded only
into a frozen dataclass of `media_assets.analysis.*` that is already imported, field by field
along its type hints (tuples, floats, bytes as base64, numpy arrays as {dtype, shape, base64}).
Anything else - a foreign or corrupt value - is a miss, recomputed and overwritten.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from dagster import ConfigurableResource, EnvVar

# Record classes may come only from these modules (and only once imported: decoding never imports).
RECORD_MODULES = ("media_assets.analysis.",)
CODEC_VERSION = 1
_TYPE = "@type"
_NDARRAY = "@ndarray"

_lock = threading.Lock()
_clients: dict[tuple[int, str, float], Any] = {}
_down_until: dict[str, float] = {}  # url -> monotonic time before which Redis is not tried again
_warned: set[tuple[str, str, str]] = set()  # (url, run id, kind) already warned about in this process


class CacheValueError(ValueError):
    """A cached value that does not decode into the record types it claims (a miss, not a failure)."""


# ------------------------------------------------------------------------------------------ codec


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _record_class(name: Any) -> type:
    """The dataclass a stored type name refers to, if it is one we allow (never imports anything)."""
    if not isinstance(name, str) or ":" not in name:
        raise CacheValueError(f"bad record type {name!r}")
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith(RECORD_MODULES) or "." in qualname:
        raise CacheValueError(f"record type {name!r} is not an analysis record")
    module = sys.modules.get(module_name)
    cls = getattr(module, qualname, None) if module is not None else None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise CacheValueError(f"record type {name!r} is not a loaded dataclass")
    return cls


def encode_value(value: Any) -> Any:
    """`value` as JSON-compatible data: dataclasses tagged with their type, arrays as base64."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {_TYPE: _type_name(type(value))}
        for f in dataclasses.fields(value):
            out[f.name] = encode_value(getattr(value, f.name))
        return out
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("object arrays cannot be cached")
        array = np.ascontiguousarray(value)
        return {
            _NDARRAY: {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "data": base64.b64encode(array.tobytes()).decode("ascii"),
            }
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode_ndarray(spec: Any) -> np.ndarray:
    try:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(n) for n in spec["shape"])
        data = base64.b64decode(spec["data"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise CacheValueError(f"bad array: {exc}") from None
    if dtype.hasobject or len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise CacheValueError("array bytes do not match dtype and shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A record class's resolved field types and constructor fields (resolved once per class)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # an unresolvable annotation: undecodable, not a crash
        raise CacheValueError(f"type hints of {cls.__qualname__}: {exc}") from None
    return hints, frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def _decode_dataclass(data: Any, cls: type | None) -> Any:
    if not isinstance(data, dict):
        raise CacheValueError(f"expected a record, got {type(data).__name__}")
    stored = _record_class(data.get(_TYPE))
    if cls is not None and stored is not cls:
        raise CacheValueError(f"expected {cls.__qualname__}, got {stored.__qualname__}")
    hints, names = _fields_of(stored)
    extra = set(data) - names - {_TYPE}
    if extra:
        raise CacheValueError(f"{stored.__qualname__}: unknown fields {sorted(extra)}")
    kwargs = {name: decode_value(data[name], hints.get(name, Any)) for name in names if name in data}
    try:
        return stored(**kwargs)
    except TypeError as exc:  # a required field missing
        raise CacheValueError(f"{stored.__qualname__}: {exc}") from None


def decode_value(data: Any, hint: Any = Any) -> Any:
    """The inverse of `encode_value`, guided by the type hint where there is one."""
    if isinstance(data, dict) and _NDARRAY in data:
        return _decode_ndarray(data[_NDARRAY])
    if isinstance(data, dict) and _TYPE in data:
        return _decode_dataclass(data, hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return decode_value(data, arm)
            except CacheValueError as exc:
                errors.append(str(exc))
        raise CacheValueError("; ".join(errors) or "no union arm matched")
    if origin is tuple or hint is tuple:
        if not isinstance(data, list):
            raise CacheValueError(f"expected a sequence, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode_value(v, args[0]) for v in data)
        if args and args != ((),):
            if len(args) != len(data):
                raise CacheValueError(f"expected {len(args)} items, got {len(data)}")
            return tuple(decode_value(v, a) for v, a in zip(data, args, strict=True))
        return tuple(decode_value(v) for v in data)
    if origin in (list, Sequence) or hint is list:
        if not isinstance(data, list):
            raise CacheValueError(f"expected a list, got {type(data).__name__}")
        return [decode_value(v, args[0] if args else Any) for v in data]
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(data, dict):
            raise CacheValueError(f"expected a mapping, got {type(data).__name__}")
        value_hint = args[1] if len(args) == 2 else Any
        return {k: decode_value(v, value_hint) for k, v in data.items()}
    if hint is bytes:
        if not isinstance(data, str):
            raise CacheValueError("expected base64 bytes")
        try:
            return base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise CacheValueError(f"bad base64: {exc}") from None
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise CacheValueError(f"expected a number, got {type(data).__name__}")
        return float(data)
    if hint in (int, bool, str):
        if type(data) is not hint:
            raise CacheValueError(f"expected {hint.__name__}, got {type(data).__name__}")
        return data
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        raise CacheValueError(f"expected a {hint.__qualname__} record")
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if isinstance(data, dict):
        return {k: decode_value(v) for k, v in data.items()}
    return data


def dumps(value: Any) -> bytes:
    """A cached value as bytes: versioned JSON."""
    return json.dumps({"v": CODEC_VERSION, "value": encode_value(value)}, separators=(",", ":")).encode("utf-8")


def loads(raw: bytes) -> Any:
    """A value written by `dumps`; raises CacheValueError for anything else."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CacheValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != CODEC_VERSION or "value" not in doc:
        raise CacheValueError("not a medialens cache value")
    return decode_value(doc["value"])


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the cache key of a model's input)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------------------------------ Redis


class ScopedCache:
    """One asset's view of the cache: keys are input digests, values lists of records (or any
    encodable value). Fits `media_assets.assets.on_keyframes.ResultCache`. Never raises for Redis."""

    def __init__(
        self,
        cache: InferenceCache,
        asset: str,
        version: str,
        warn: Callable[[str], None] | None = None,
        run_id: str = "",
    ) -> None:
        self.cache, self.asset, self.version, self.warn, self.run_id = cache, asset, version, warn, run_id
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def key(self, digest: str) -> str:
        return f"{self.cache.prefix}:{self.asset}:{self.version}:{digest}"

    def get_many(self, digests: Sequence[str]) -> list[Any | None]:
        if not digests:
            return []
        raws = self.cache.mget([self.key(d) for d in digests], self._warner("redis"))
        out: list[Any | None] = []
        bad = 0
        for raw in raws:
            value = None
            if raw is not None:
                try:
                    value = loads(raw)
                except CacheValueError:
                    bad += 1
            out.append(value)
        if bad:
            self._warner("value")(f"inference cache: {bad} unreadable value(s) for {self.asset} ignored (recomputed)")
        found = sum(v is not None for v in out)
        self.hits += found
        self.misses += len(out) - found
        return out

    def get(self, digest: str) -> Any | None:
        return self.get_many([digest])[0]

    def put_many(self, items: Mapping[str, Any]) -> None:
        encoded: dict[str, bytes] = {}
        for digest, value in items.items():
            try:
                raw = dumps(value)
            except TypeError as exc:
                self._warner("encode")(f"inference cache: a {self.asset} result cannot be cached ({exc})")
                continue
            if len(raw) <= self.cache.max_value_bytes:
                encoded[self.key(digest)] = raw
        if encoded and self.cache.mset(encoded, self._warner("redis")):
            self.writes += len(encoded)

    def put(self, digest: str, value: Any) -> None:
        self.put_many({digest: value})

    def _warner(self, kind: str) -> Callable[[str], None]:
        """Warns once per run, URL and kind of trouble in this process: a dead Redis is one line in
        the run's log, not one per frame or per asset."""

        def warn(message: str) -> None:
            marker = (self.cache.url, self.run_id or f"scope-{id(self)}", kind)
            with _lock:
                if marker in _warned:
                    return
                _warned.add(marker)
            if self.warn is not None:
                self.warn(message)

        return warn


class InferenceCache(ConfigurableResource):
    """Model results in Redis by (asset, model version, input sha256); disabled when `url` is empty
    (the default; REDIS_URL turns it on). Redis should run with maxmemory + allkeys-lru
    (deploy/redis.conf), so the cache stays bounded and evicts what was not read for longest."""

    url: str = ""
    """redis://[:password@]host:port/db; empty = no cache."""
    ttl_s: int = 30 * 24 * 3600
    """Expiry of every entry (0 = none; LRU eviction bounds memory either way)."""
    prefix: str = f"medialens:v{CODEC_VERSION}"
    socket_timeout_s: float = 0.5
    """Connect and read timeout: a dead or blackholed Redis costs at most this per try."""
    retry_after_s: float = 30.0
    """After a connection error, Redis is not tried again in this process for this long."""
    max_value_bytes: int = 16 * 1024 * 1024
    """Larger results are not cached (Redis allows 512 MB, but they would crowd out the rest)."""

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def target(self) -> str:
        """`url`, also where the resource is used outside a Dagster run without
        `process_config_and_initialize()`: there an `EnvVar("REDIS_URL")` is unresolved, its text the
        variable's name, and formatting it raises."""
        if isinstance(self.url, EnvVar):
            return self.url.get_value() or ""
        return self.url

    def scope(
        self, asset: str, version: str, warn: Callable[[str], None] | None = None, run_id: str = ""
    ) -> ScopedCache | None:
        """The view one asset run uses; None when the cache is off."""
        return ScopedCache(self, asset, version, warn, run_id) if self.enabled else None

    # -- connection, with a per-process circuit breaker -------------------------------------------
    def _client(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        key = (os.getpid(), self.url, self.socket_timeout_s)  # a forked child makes its own connections
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(
                    self.target,
                    socket_timeout=self.socket_timeout_s,
                    socket_connect_timeout=self.socket_timeout_s,
                    retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again, not the client
                    health_check_interval=0,
                )
                _clients[key] = client
            return client

    def available(self) -> bool:
        """False while the breaker is open after a connection error."""
        with _lock:
            return time.monotonic() >= _down_until.get(self.url, 0.0)

    def _failed(self, exc: Exception, warn: Callable[[str], None]) -> None:
        """Any failure (refused, timed out, out of memory, a malformed URL) opens the breaker: the run
        goes on without the cache, and Redis is tried again after `retry_after_s`."""
        with _lock:
            _down_until[self.url] = time.monotonic() + self.retry_after_s
        warn(
            f"inference cache: Redis at {redact(self.target)} failed ({type(exc).__name__}: {exc}); "
            f"computing without the cache (next try in {self.retry_after_s:g} s)"
        )

    def _down(self, warn: Callable[[str], None]) -> bool:
        if self.available():
            return False
        warn(f"inference cache: Redis at {redact(self.target)} is unreachable; computing without the cache")
        return True

    def mget(self, keys: Sequence[str], warn: Callable[[str], None] = lambda _: None) -> list[bytes | None]:
        """The raw values of `keys` in one round trip; all misses when Redis is off or down."""
        if not self.enabled or not keys or self._down(warn):
            return [None] * len(keys)
        try:
            values = self._client().mget(list(keys))
        except Exception as exc:
            self._failed(exc, warn)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) else None for v in values]

    def mset(self, items: Mapping[str, bytes], warn: Callable[[str], None] = lambda _: None) -> bool:
        """Write raw values (with the TTL) in one pipelined round trip; False when it did not happen."""
        if not self.enabled or not items or self._down(warn):
            return False
        try:
            pipe = self._client().pipeline(transaction=False)
            for key, raw in items.items():
                pipe.set(key, raw, ex=self.ttl_s if self.ttl_s > 0 else None)
            pipe.execute()
        except Exception as exc:
            self._failed(exc, warn)
            return False
        return True

    def forget_inputs(self, digests: Sequence[str], asset: str | None = None) -> int:
        """Delete the cached results of these inputs (every asset and version, or one asset's), for
        `medialens forget`; returns how many entries went. Unlike reads this raises when Redis
        fails (ConnectionError): a deletion request must not pass silently."""
        if not self.enabled or not digests:
            return 0
        wanted = set(digests)
        client = self._client()
        pattern = f"{self.prefix}:{asset}:*" if asset else f"{self.prefix}:*"
        doomed = [
            k
            for k in client.scan_iter(match=pattern, count=1000)
            if (k.decode() if isinstance(k, bytes) else str(k)).rsplit(":", 1)[-1] in wanted
        ]
        for i in range(0, len(doomed), 500):
            client.delete(*doomed[i : i + 500])
        return len(doomed)


def reset_for_tests() -> None:
    """Forget clients, breaker state and warnings of this process."""
    with _lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):
                client.close()
        _clients.clear()
        _down_until.clear()
        _warned.clear()
