"""Qdrant, where the vectors of every analysis land (embedded folder by default, a server in production).

Embedded Qdrant is Qdrant Edge (`resources/edge_client.py`: one shard per collection, opened in
process), which takes an exclusive lock on a shard and fails at once when another process has it
open. Dagster runs steps in several processes, and the CLI and the
webserver may touch the same folder at the same time, so this resource never keeps an embedded
client open: every operation opens one under an exclusive `flock` on `<path>/.medialens.lock`,
which makes the other processes wait their turn instead of failing, and closes it afterwards.
The holder writes who it is into that file (host, pid, start time, command, run id), so a process
that waits longer than `lock_timeout_s` can name the one that may be hung instead of only failing.

Point ids are deterministic (`point_id`), so re-materialising a partition overwrites its points
instead of duplicating them, and `replace_partition` writes the new points before removing the old
ones, so search keeps answering from the previous version until the new one is complete. Ctrl-C or
SIGTERM in the middle of a partition's writes is held until that partition is replaced, so an
interrupted run never leaves one half-written.

With a server (`url`), transport failures (refused, timed out, cut off) surface as
`QdrantUnavailable` naming the URL and the cause instead of an httpx traceback.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import PrivateAttr
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from resources.edge_client import EdgeClient, local_mode_data, migrate_local_mode
from resources.faults import fault_point
from resources.inference_cache import redact
from resources.interrupts import deferred_interrupts
from resources.workers import Liveness, Worker, hostname, this_worker

# Never change this: every stored point id derives from it, and a new namespace would orphan them all.
POINT_ID_NAMESPACE = uuid.UUID("6f1c2b7e-5d0a-4c55-9a43-3e7d2f8b91c4")

# Fields every point carries; the ones partitions are replaced and deleted by.
INDEXED_FIELDS = ("partition", "asset", "model_version")
# Keyword payload indexes: those fields and what search filters by (`--kind` is `source`).
KEYWORD_INDEXES = (*INDEXED_FIELDS, "source", "media_kind", "language")

UPSERT_BATCH = 256
# HNSW beam width per query: 128 kept recall@10 at 1.0 at 100 000 512-d points for ~2 ms (bench/search.py)
SEARCH_EF = 128
SCROLL_PAGE = 1024
LOCK_FILE = ".medialens.lock"
LOCK_WAIT_LOG_S = 5.0  # a wait longer than this is logged once, so that it is never silent
HOLDER_RECORD_MAX = 4096  # bytes of the holder record read back from the lock file

log = logging.getLogger("medialens")

# What the caller is doing, recorded with the lock it takes (see `holder_note`).
_holder_note: ContextVar[str] = ContextVar("medialens_qdrant_holder_note", default="")


@contextmanager
def holder_note(note: str) -> Iterator[None]:
    """Record `note` (e.g. "medialens forget talk-3f2a") in the embedded-Qdrant locks taken inside
    the block, so that whoever waits on one learns what the holder is doing. Dagster runs need no
    note: the resource records its run id itself."""
    token = _holder_note.set(note)
    try:
        yield
    finally:
        _holder_note.reset(token)


class QdrantUnavailable(ConnectionError):
    """The Qdrant server did not answer (refused, timed out, went away mid-request).

    A ConnectionError so that callers which treat OSError as "this environment, not this input"
    (per-partition loops, the CLI) do so here too. `message` comes first so that the exception
    survives pickling (OSError pickles its args)."""

    def __init__(self, message: str, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url, self.reason = url, reason


def _transport_reason(exc: BaseException) -> str:
    """'connection refused' from httpx's '[Errno 111] Connection refused', and the like."""
    if isinstance(exc, UnexpectedResponse):
        return f"HTTP {exc.status_code} {exc.reason_phrase}".strip()
    source = exc.source if isinstance(exc, ResponseHandlingException) else exc
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(source).strip()).rstrip(".")
    if not text:
        return type(source).__name__
    return text[0].lower() + text[1:]


def _short_command(argv: Sequence[str], limit: int = 160) -> str:
    """A command line short enough for an error message: `medialens analyse talk.mp4` rather than
    the interpreter's and the script's full paths, or a `python -c` program's every line."""
    args = list(argv)
    if len(args) > 1 and Path(args[0]).name.startswith("python") and not args[1].startswith("-"):
        args = args[1:]  # `python /venv/bin/medialens ...`: the script says more than the interpreter
    parts: list[str] = []
    for arg in args:
        if arg.startswith("/"):
            arg = Path(arg).name or arg
        first = arg.splitlines()[0] if arg.strip() else arg
        if len(first) > 40 or first != arg:
            first = first[:40].rstrip() + "…"
        parts.append(first)
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the embedded-Qdrant lock, as the holder wrote it into the lock file."""

    worker: Worker
    command: str
    since: float
    """Epoch seconds at which it took the lock."""
    run_id: str = ""
    note: str = ""

    def encode(self) -> bytes:
        record = {
            **self.worker.as_json(),
            "command": self.command,
            "since": round(self.since, 3),
            "run_id": self.run_id,
            "note": self.note,
        }
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> LockHolder | None:
        """None for an empty file (nobody identified, or a holder that has not written yet) and for
        anything unreadable, e.g. a write caught half-way."""
        try:
            obj = json.loads(raw.decode("utf-8"))
            worker = Worker.from_json(obj)
            if worker is None:
                return None
            return cls(
                worker,
                str(obj.get("command", "")),
                float(obj["since"]),
                str(obj.get("run_id") or ""),
                str(obj.get("note") or ""),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        """`pid 4242 on host h (medialens analyse talk.mp4, run 1a2b3c4d)`."""
        extra = [self.command or "command unknown"]
        if self.run_id:
            extra.append(f"run {self.run_id[:8]}")
        if self.note:
            extra.append(self.note)
        return f"{self.worker.describe()} ({', '.join(extra)})"

    def held_since(self) -> str:
        """`since 10:03:11 (5 min)`; with the date when it is not today."""
        moment = time.localtime(self.since)
        fmt = "%H:%M:%S" if time.strftime("%Y%m%d", moment) == time.strftime("%Y%m%d") else "%Y-%m-%d %H:%M:%S"
        return f"since {time.strftime(fmt, moment)} ({_duration(time.time() - self.since)})"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0.0, seconds):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _read_holder(fd: int) -> LockHolder | None:
    try:
        return LockHolder.decode(os.pread(fd, HOLDER_RECORD_MAX, 0))
    except OSError:
        return None


def _kernel_lock_pids(fd: int) -> list[int]:
    """Pids holding a flock on `fd`'s file according to /proc/locks (Linux): the holder even when
    it never identified itself (an older medialens, another program). Empty where unknown."""
    try:
        st = os.fstat(fd)
        tag = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2147212 0 EOF"; waiters are marked "->"
        if tag in f" {' '.join(fields)} " and len(fields) >= 5 and fields[1] == "FLOCK" and fields[4].isdigit():
            pid = int(fields[4])
            if pid > 0 and pid != os.getpid() and pid not in pids:
                pids.append(pid)
    return pids


def _process_command(pid: int) -> str:
    try:
        return _short_command(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return ""


@dataclass(frozen=True)
class SparseVector:
    """Term ids and weights (e.g. a text's BM25 words) beside a point's dense vector."""

    indices: Sequence[int]
    values: Sequence[float]


@dataclass(frozen=True)
class VectorPoint:
    """One vector of an analysis; `item` names it within its partition and asset (e.g. a keyframe index),
    so that the same item of a re-run lands on the same point id. `sparse` holds named sparse vectors
    of collections that have them (the `text` collection's `words`)."""

    item: str
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)
    sparse: Mapping[str, SparseVector] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search result, detached from qdrant-client's models so callers need not import them."""

    id: str
    score: float
    payload: dict[str, Any]


# Embedded clients this process holds, per thread, so that nested `client()` calls (e.g. a caller
# holding `with qdrant.client():` around several methods) reuse the open client: a second flock on
# a new descriptor would block on our own lock until the timeout.
_held = threading.local()


# What `QdrantResource.client()` yields: the same calls work on both.
VectorClient = QdrantClient | EdgeClient


def _held_clients() -> dict[tuple[int, str], EdgeClient]:
    table: dict[tuple[int, str], EdgeClient] | None = getattr(_held, "clients", None)
    if table is None:
        table = {}
        _held.clients = table
    return table


@dataclass(frozen=True)
class Between:
    """A `must` value meaning a number within bounds (either may be None), e.g. a moment's start."""

    gte: float | None = None
    lte: float | None = None


def _equality_filter(must: Mapping[str, Any] | None) -> models.Filter | None:
    """Payload conditions: equality; a list/tuple/set value means "any of these"; `Between` a range
    (a point without the field, or with null, never matches a range)."""
    if not must:
        return None
    conditions: list[models.Condition] = []
    for key, value in must.items():
        match: models.Match
        if isinstance(value, Between):
            conditions.append(models.FieldCondition(key=key, range=models.Range(gte=value.gte, lte=value.lte)))
            continue
        if isinstance(value, list | tuple | set | frozenset):
            match = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        conditions.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=conditions)


def _dense_params(info: Any, name: str) -> models.VectorParams:
    vectors = info.config.params.vectors
    if not isinstance(vectors, models.VectorParams):
        raise ValueError(
            f"Qdrant collection {name!r} uses named or no dense vectors; medialens expects one unnamed vector"
        )
    return vectors


@dataclass
class _Replacement:
    """One partition's validated points and the filter of its stale ones."""

    partition: str
    asset: str
    structs: list[models.PointStruct]
    sizes: dict[str, int]
    stale: models.Filter


class PartitionWrites:
    """A step's writes to one collection, validated as they come (a bad vector fails its own
    partition at once) and written by `QdrantResource.flush` in one session."""

    def __init__(
        self, collection: str, dim: int | None = None, distance: str = "Cosine", sparse: Sequence[str] = ()
    ) -> None:
        self.collection, self.dim, self.distance, self.sparse = collection, dim, distance, tuple(sparse)
        self.replaced: list[_Replacement] = []
        self.dropped: set[str] = set()

    @property
    def pending(self) -> bool:
        return bool(self.replaced or self.dropped)

    def clear(self) -> None:
        self.replaced, self.dropped = [], set()

    def replace(self, partition: str, asset: str, model_version: str, points: Sequence[VectorPoint]) -> int:
        """Queue `points` as the only points of this partition and asset (see replace_partition);
        returns how many will be written. Raises ValueError for a bad point, queuing nothing."""
        ids: list[str] = []
        structs: list[models.PointStruct] = []
        sizes: dict[str, int] = {}
        for p in points:
            if p.item in sizes:  # the same id twice would silently keep only the last vector
                raise ValueError(f"{asset}/{partition}: item {p.item!r} appears twice in the points to write")
            arr = np.asarray(p.vector, dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError(f"{asset}/{partition}: vector of item {p.item!r} is not one-dimensional")
            if not np.isfinite(arr).all():  # NaN would poison every similarity involving the point
                raise ValueError(f"{asset}/{partition}: vector of item {p.item!r} has NaN or infinite values")
            if self.dim is not None and arr.shape[0] != self.dim:
                raise ValueError(
                    f"{asset}/{partition}: vector of dimension {arr.shape[0]} for item {p.item!r}, "
                    f"but Qdrant collection {self.collection!r} has dimension {self.dim}"
                )
            sizes[p.item] = arr.shape[0]
            pid = QdrantResource.point_id(partition, asset, p.item, model_version)
            ids.append(pid)
            payload = {**p.payload, "partition": partition, "asset": asset, "model_version": model_version}
            unknown = set(p.sparse) - set(self.sparse)
            if unknown:
                raise ValueError(
                    f"{asset}/{partition}: item {p.item!r} has sparse vectors {sorted(unknown)} that collection "
                    f"{self.collection!r} is not written with (sparse={list(self.sparse)})"
                )
            vector: Any = arr.tolist()
            if p.sparse:
                vector = {"": vector}
                for name, sv in p.sparse.items():
                    if len(sv.indices) != len(sv.values):
                        raise ValueError(f"{asset}/{partition}: sparse vector {name!r} of item {p.item!r} is ragged")
                    vector[name] = models.SparseVector(indices=list(sv.indices), values=list(sv.values))
            structs.append(models.PointStruct(id=pid, vector=vector, payload=payload))
        if self.dim is None and sizes:
            self.dim = next(iter(sizes.values()))

        scope: list[models.Condition] = [
            models.FieldCondition(key="partition", match=models.MatchValue(value=partition)),
            models.FieldCondition(key="asset", match=models.MatchValue(value=asset)),
        ]
        stale = models.Filter(must=scope)
        if ids:
            # stale = not (current version and one of the ids just written)
            stale = models.Filter(
                must=scope,
                must_not=[
                    models.Filter(
                        must=[
                            models.FieldCondition(key="model_version", match=models.MatchValue(value=model_version)),
                            models.HasIdCondition(has_id=list(ids)),
                        ]
                    )
                ],
            )
        self.replaced.append(_Replacement(partition, asset, structs, sizes, stale))
        return len(structs)

    def drop(self, partition: str) -> None:
        """Queue the removal of every point of `partition` in this collection (e.g. an analysis that
        was switched off)."""
        self.dropped.add(partition)


class QdrantResource(ConfigurableResource):
    """Vector storage for all analyses; one resource so that locking, ids and partition replacement
    follow the same rules in assets, sensors and the CLI."""

    url: str | None = None
    """Server mode when set (e.g. http://qdrant:6333); the embedded folder `path` is then unused."""
    api_key: str | None = None
    path: str = "data/qdrant"
    """Folder of the embedded Qdrant, used when `url` is not set."""
    lock_timeout_s: float = 120.0
    """How long to wait for another process's embedded session before failing (it may be hung)."""
    index_after_points: int = 20000
    """Embedded: once a collection holds this many points outside its HNSW index, the write that
    got it there builds the index (searches scan unindexed points: ~30 ms per 100 000)."""

    # Set by Dagster for a run (never configured): recorded with the lock, and where a long wait is logged.
    _run_id: str = PrivateAttr(default="")
    _run_log: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_id = context.run_id or ""
        self._run_log = context.log

    # -- connection ------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """Whether the folder lock applies (a server does its own concurrency control)."""
        return not self.server_url

    @property
    def server_url(self) -> str:
        """`url`, also where the resource is used outside a Dagster run (the CLI's search and forget):
        there Dagster has not resolved an `EnvVar("QDRANT_URL")`, whose text is the variable's name."""
        url = self.url or ""
        if isinstance(url, EnvVar):
            return url.get_value() or ""
        return url

    @contextmanager
    def client(self) -> Iterator[VectorClient]:
        """A client for the duration of a block, because an embedded one must not outlive it: other
        processes wait on the folder lock until it closes. Nested calls in one thread reuse it, so
        wrap several calls in one `with` to open the embedded store once."""
        if not self.embedded:
            url = redact(self.server_url)
            # The version check is a request per client, i.e. per call here, and only ever warns.
            server = QdrantClient(url=self.server_url, api_key=self.api_key, check_compatibility=False)
            try:
                yield server
            except ResponseHandlingException as exc:  # refused, timed out, cut off mid-request
                reason = _transport_reason(exc)
                raise QdrantUnavailable(f"Qdrant server at {url} is unreachable ({reason})", url, reason) from exc
            except UnexpectedResponse as exc:
                if exc.status_code not in (502, 503, 504):  # a proxy before a server that is down or starting
                    raise
                reason = _transport_reason(exc)
                raise QdrantUnavailable(f"Qdrant server at {url} is unavailable ({reason})", url, reason) from exc
            finally:
                server.close()
            return

        folder = Path(self.path).expanduser().absolute()
        key = (os.getpid(), str(folder))  # a forked child must not reuse its parent's client
        held = _held_clients()
        if key in held:  # the outer `with` owns the lock and closes the client
            yield held[key]
            return

        with self.folder_locked():
            if local_mode_data(folder):  # written by medialens before it used Qdrant Edge
                with deferred_interrupts():
                    migrate_local_mode(folder, KEYWORD_INDEXES, self.index_after_points)
            edge = EdgeClient(folder, self.index_after_points)
            held[key] = edge
            try:
                yield edge
            finally:
                del held[key]
                edge.close()

    @contextmanager
    def folder_locked(self) -> Iterator[Path]:
        """Hold the embedded folder's lock, named as this process's (and `holder_note`'s), without
        opening anything in it: what `client()` does first, and what a backup copying the folder
        between sessions needs. Yields the folder."""
        folder = Path(self.path).expanduser().absolute()
        folder.mkdir(parents=True, exist_ok=True)
        lock_path = folder / LOCK_FILE
        # The lock file stays: deleting it would let two processes lock two different inodes.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, lock_path)
            try:
                self._identify(fd)
                yield folder
            finally:
                # Emptied before unlocking, so a record always names a holder; a killed holder leaves
                # its record behind, which readers recognise by the worker being gone.
                with suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _identify(self, fd: int) -> None:
        """Write who holds the lock into the lock file itself (truncate + write on the locked inode,
        no rename: a new inode would be a second, unlocked lock). Best effort: a full disk must not
        keep the holder from its work."""
        record = LockHolder(
            this_worker(), _short_command(sys.orig_argv), time.time(), self._run_id, _holder_note.get()
        ).encode()
        with suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)

    def _acquire(self, fd: int, lock_path: Path) -> None:
        # flock has no timeout of its own: poll non-blocking, backing off, until the deadline. Never
        # inside deferred_interrupts: Ctrl-C must end a wait at once.
        started = time.monotonic()
        deadline = started + self.lock_timeout_s
        announced = False
        delay = 0.02
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if announced:
                    self._log(
                        f"got the embedded Qdrant lock at {lock_path.parent} after {time.monotonic() - started:.0f} s"
                    )
                return
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(self._still_locked(fd, lock_path)) from None
                if not announced and now - started >= LOCK_WAIT_LOG_S:
                    announced = True
                    holder, _ = self._holder(fd)
                    self._log(
                        f"waiting for the embedded Qdrant lock at {lock_path.parent} held by {holder} "
                        f"(for up to {self.lock_timeout_s:g} s)"
                    )
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.5)

    def _log(self, message: str) -> None:
        # the run's log inside Dagster (the UI shows it), stderr for the CLI (logging's last resort)
        (self._run_log or log).warning(message)

    @staticmethod
    def _holder(fd: int) -> tuple[str, int | None]:
        """Who holds the lock, as honestly as can be said, and the pid to stop when it is on this host.

        The record in the file is trusted only while its process lives; otherwise /proc/locks may
        still name the holder (a process that has not written its record yet, an older medialens)."""
        record = _read_holder(fd)
        liveness = record.worker.liveness() if record is not None else None
        if record is not None and liveness is Liveness.ALIVE:
            return f"{record.describe()}, holding it {record.held_since()}", record.worker.pid
        if record is not None and liveness is Liveness.ELSEWHERE:
            return (
                f"{record.describe()}, holding it {record.held_since()} (another machine: whether it "
                "still runs cannot be checked from here)",
                None,
            )
        stale = (
            f"the lock file still names {record.worker.describe()}, which has exited"
            if record is not None
            else "the lock file names nobody"
        )
        pids = _kernel_lock_pids(fd)
        if pids:
            pid = pids[0]
            command = _process_command(pid)
            who = f"pid {pid} on host {hostname()}" + (f" ({command})" if command else "")
            return f"{who}, which has not identified itself ({stale}: an older medialens or another program)", pid
        return f"a process that has not identified itself ({stale}; it may have just taken the lock)", None

    def _still_locked(self, fd: int, lock_path: Path) -> str:
        holder, pid = self._holder(fd)
        remedy = f"stop it (kill {pid})" if pid is not None else "stop it"
        return (
            f"embedded Qdrant at {lock_path.parent} is still locked after {self.lock_timeout_s:g} s by {holder}: "
            f"it may be hung — {remedy}, retry when it finishes, or set QDRANT_URL to use a Qdrant server "
            f"(lock file {lock_path})"
        )

    # -- ids -------------------------------------------------------------------------------------
    @staticmethod
    def point_id(partition: str, asset: str, item: str, model_version: str) -> str:
        """Deterministic, so re-materialising overwrites instead of duplicating, and the model version
        is part of it so a new version's points never overwrite the old ones before they are complete."""
        return str(uuid.uuid5(POINT_ID_NAMESPACE, f"{partition}/{asset}/{item}/{model_version}"))

    # -- collections -----------------------------------------------------------------------------
    def ensure_collection(self, name: str, dim: int, distance: str = "Cosine", sparse: Sequence[str] = ()) -> None:
        """Idempotent, so every asset can call it before writing; refuses a collection of another
        dimension or metric, which would otherwise fail on upsert or silently rank wrongly. `sparse`
        names sparse vectors (weighted by IDF, as BM25 needs) that an existing collection gains."""
        try:
            metric = models.Distance(distance)
        except ValueError:
            raise ValueError(
                f"unknown distance {distance!r} for Qdrant collection {name!r}; "
                f"one of {[d.value for d in models.Distance]}"
            ) from None
        if dim <= 0:
            raise ValueError(f"Qdrant collection {name!r}: dimension must be positive, got {dim}")
        with self.client() as c:
            sparse_config = {n: models.SparseVectorParams(modifier=models.Modifier.IDF) for n in sparse}
            if not c.collection_exists(name):
                try:
                    c.create_collection(
                        name,
                        vectors_config=models.VectorParams(size=dim, distance=metric),
                        sparse_vectors_config=sparse_config or None,
                    )
                except Exception:
                    # a server may have had it created by another process in between
                    if not c.collection_exists(name):
                        raise
            info = c.get_collection(name)
            params = _dense_params(info, name)
            if params.size != dim:
                raise ValueError(
                    f"Qdrant collection {name!r} holds {params.size}-d vectors, not {dim}-d: "
                    "a model with another embedding size needs its own collection"
                )
            if params.distance != metric:
                raise ValueError(
                    f"Qdrant collection {name!r} uses distance {params.distance.value}, asked for {metric.value}"
                )
            missing = {n: v for n, v in sparse_config.items() if n not in (info.config.params.sparse_vectors or {})}
            if missing:  # a collection created before it had them
                c.update_collection(name, sparse_vectors_config=missing)
            # Also checked for an existing collection: one created by an older medialens, or by a
            # process killed between creating the collection and its indexes, gets them now.
            existing = info.payload_schema or {}
            for field in KEYWORD_INDEXES:
                if field not in existing:
                    c.create_payload_index(name, field, field_schema=models.PayloadSchemaType.KEYWORD)

    # -- writes ----------------------------------------------------------------------------------
    def replace_partition(
        self, collection: str, partition: str, asset: str, model_version: str, points: Sequence[VectorPoint]
    ) -> int:
        """Make `points` the only points of this partition and asset: upsert first, then delete the
        stale ones, so search finds the old version until the new one is written and a retry after a
        failure in between simply finishes the job. Returns the number of points written."""
        batch = PartitionWrites(collection)
        written = batch.replace(partition, asset, model_version, points)
        with self.client() as c:
            if not c.collection_exists(collection):
                raise ValueError(
                    f"Qdrant collection {collection!r} does not exist: call ensure_collection({collection!r}, dim) "
                    "before replace_partition"
                )
            self._write(c, batch)
        return written

    @contextmanager
    def partition_writes(
        self, collection: str, dim: int | None = None, distance: str = "Cosine", sparse: Sequence[str] = ()
    ) -> Iterator[PartitionWrites]:
        """Collect a step's per-partition writes and make them in one session when the block ends
        (also when it ends with the failure of some partitions: the others' points are written).

        Opening embedded Qdrant costs ~40 ms (qdrant-client parses its schema on every open), and a
        step over 20 media opened it twice per media; one session per step takes the lock once.
        The collection is created on first write (`dim`, or the first point's length)."""
        writes = PartitionWrites(collection, dim, distance, sparse)
        try:
            yield writes
        except Exception:
            if writes.pending:
                self.flush(writes)
            raise
        # Not on an interrupt (KeyboardInterrupt, Dagster's DagsterExecutionInterruptedError, both
        # BaseExceptions): the run is stopping and will record no manifest for these partitions, so
        # their new points must not become visible either.
        if writes.pending:
            self.flush(writes)

    def flush(self, writes: PartitionWrites) -> None:
        """Write everything `writes` collected, in one client session, and empty it. A server that
        is down or goes away fails it with a QdrantUnavailable that says which partitions were
        written and what to run once the server is back."""
        done: list[str] = []
        try:
            with self.client() as c:
                dim = writes.dim
                if dim is not None:
                    self.ensure_collection(writes.collection, dim, writes.distance, writes.sparse)
                if c.collection_exists(writes.collection):
                    self._write(c, writes, done)
                    if isinstance(c, EdgeClient):
                        self._optimize(c, writes.collection)
        except QdrantUnavailable as exc:
            raise QdrantUnavailable(self._unwritten(exc, writes, done), exc.url, exc.reason) from exc
        writes.clear()

    def _optimize(self, c: EdgeClient, collection: str) -> None:
        """Let Qdrant's optimizers do what a step's writes made due (no server runs them in the
        background here): index a segment once it holds `index_after_points`, vacuum deleted points.
        Free when nothing is due. The points are written and searchable before this; an interrupt
        here loses nothing (the next write finds the same work due)."""
        started = time.monotonic()
        if c.optimize(collection):
            info = c.get_collection(collection)
            (self._run_log or log).info(
                f"optimized embedded Qdrant collection {collection!r} in {time.monotonic() - started:.1f} s: "
                f"{info.indexed_vectors_count} of {info.points_count} points in the HNSW index"
            )

    @staticmethod
    def _unwritten(exc: QdrantUnavailable, writes: PartitionWrites, done: Sequence[str]) -> str:
        assets = sorted({w.asset for w in writes.replaced}) or ["the asset"]
        left = [p for p in [*(w.partition for w in writes.replaced), *sorted(writes.dropped)] if p not in done]
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        total = len(writes.replaced) + len(writes.dropped)
        unwritten = f"; not written (or only partly, beside their previous vectors): {shown}" if left else ""
        return (
            f"{exc} while writing {total} partition(s) to collection {writes.collection!r}: "
            f"{len(done)} of {total} written{unwritten}. The step fails, so none of its partitions is recorded "
            f"as materialised: when the server is back, run medialens analyse again or re-materialise "
            f"{', '.join(assets)} for them"
        )

    def _write(self, c: VectorClient, writes: PartitionWrites, done: list[str] | None = None) -> None:
        """Replace each partition's points: upserts, then the delete of the stale ones. `done`
        collects the partitions fully replaced, for the error when the server goes away."""
        collection = writes.collection
        if writes.replaced:
            dim = _dense_params(c.get_collection(collection), collection).size
            # checked before writing anything, so a wrong model never leaves a half-written partition
            for w in writes.replaced:
                for item, size in w.sizes.items():
                    if size != dim:
                        raise ValueError(
                            f"{w.asset}/{w.partition}: vector of dimension {size} for item {item!r}, "
                            f"but Qdrant collection {collection!r} has dimension {dim}"
                        )
        for w in writes.replaced:
            # One partition at a time, so an interrupt is delivered between partitions, never inside
            # one (bounded: a partition's writes; a hung server ends it with a timeout error).
            with deferred_interrupts():
                for start in range(0, len(w.structs), UPSERT_BATCH):
                    c.upsert(collection, points=w.structs[start : start + UPSERT_BATCH], wait=True)
                    fault_point("qdrant:upsert")
                c.delete(collection, points_selector=models.FilterSelector(filter=w.stale), wait=True)
            if done is not None:
                done.append(w.partition)
        if writes.dropped:
            selector = _equality_filter({"partition": sorted(writes.dropped)})
            assert selector is not None
            with deferred_interrupts():
                c.delete(collection, points_selector=models.FilterSelector(filter=selector), wait=True)
            if done is not None:
                done.extend(sorted(writes.dropped))

    def delete_partition(self, partition: str, collection: str | None = None) -> int:
        """Forget a media file's vectors when it is removed or re-registered; across every collection
        by default because each analysis has its own. Returns the number of points deleted."""
        selector = _equality_filter({"partition": partition})
        assert selector is not None
        deleted = 0
        with self.client() as c:
            names = [collection] if collection else [col.name for col in c.get_collections().collections]
            for name in names:
                if not c.collection_exists(name):
                    continue
                # exact in embedded mode (we hold the lock); a server may see concurrent writes in between
                deleted += c.count(name, count_filter=selector, exact=True).count
                c.delete(name, points_selector=models.FilterSelector(filter=selector), wait=True)
        return deleted

    def delete_where(self, collection: str, must: Mapping[str, Any], field: str, values: Sequence[Any]) -> int:
        """Delete the points matching `must` whose payload `field` is one of `values` (e.g. single
        faces of a partition); returns how many there were."""
        selector = _equality_filter({**must, field: list(values)})
        assert selector is not None
        with self.client() as c:
            if not c.collection_exists(collection) or not values:
                return 0
            n = c.count(collection, count_filter=selector, exact=True).count
            c.delete(collection, points_selector=models.FilterSelector(filter=selector), wait=True)
        return n

    # -- reads -----------------------------------------------------------------------------------
    def search(
        self, collection: str, vector: Sequence[float], limit: int = 10, must: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Nearest points, optionally restricted by payload equality (e.g. one partition or model
        version); an analysis that has not run yet simply has no hits rather than failing."""
        query = np.asarray(vector, dtype=np.float64).tolist()
        return self._query(collection, query, None, limit, must)

    def search_sparse(
        self,
        collection: str,
        name: str,
        vector: SparseVector,
        limit: int = 10,
        must: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Best matches of a sparse vector (e.g. the query's BM25 words); none where the collection
        or its sparse vector `name` does not exist yet (indexed before it had one)."""
        if not vector.indices:
            return []
        query = models.SparseVector(indices=list(vector.indices), values=list(vector.values))
        return self._query(collection, query, name, limit, must)

    def _query(
        self, collection: str, query: Any, using: str | None, limit: int, must: Mapping[str, Any] | None
    ) -> list[Hit]:
        """One query of the dense vector (`using` None) or a named sparse one, as `Hit`s."""
        with self.client() as c:
            if not c.collection_exists(collection):
                return []
            if using is not None and using not in (c.get_collection(collection).config.params.sparse_vectors or {}):
                return []
            result = c.query_points(
                collection,
                query=query,
                using=using,
                query_filter=_equality_filter(must),
                limit=limit,
                with_payload=True,
                search_params=models.SearchParams(hnsw_ef=SEARCH_EF) if using is None else None,
            )
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in result.points]

    def count(self, collection: str, partition: str | None = None, asset: str | None = None) -> int:
        """Exact count, for metadata and checks; 0 for a collection no analysis has created yet."""
        must = {k: v for k, v in (("partition", partition), ("asset", asset)) if v is not None}
        with self.client() as c:
            if not c.collection_exists(collection):
                return 0
            return c.count(collection, count_filter=_equality_filter(must), exact=True).count

    def scroll_payloads(
        self, collection: str, must: Mapping[str, Any] | None = None, limit: int = 10000
    ) -> list[dict[str, Any]]:
        """Payloads without vectors (cheap), for reports and the CLI; at most `limit` of them."""
        out: list[dict[str, Any]] = []
        flt = _equality_filter(must)
        with self.client() as c:
            if not c.collection_exists(collection):
                return out
            offset: Any = None
            while len(out) < limit:
                records, offset = c.scroll(
                    collection,
                    scroll_filter=flt,
                    limit=min(SCROLL_PAGE, limit - len(out)),
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
                out.extend(dict(r.payload or {}) for r in records)
                if offset is None or not records:
                    break
        return out
