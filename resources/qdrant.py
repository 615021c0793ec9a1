"""Qdrant, where the vectors of every analysis land (embedded folder by default, a server in production).

Embedded Qdrant (`QdrantClient(path=...)`) takes an exclusive lock on its folder and fails at once
when another process has it open. Dagster runs steps in several processes, and the CLI and the
webserver may touch the same folder at the same time, so this resource never keeps an embedded
client open: every operation opens one under an exclusive `flock` on `<path>/.medialens.lock`,
which makes the other processes wait their turn instead of failing, and closes it afterwards.

Point ids are deterministic (`point_id`), so re-materialising a partition overwrites its points
instead of duplicating them, and `replace_partition` writes the new points before removing the old
ones, so search keeps answering from the previous version until the new one is complete.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dagster import ConfigurableResource
from qdrant_client import QdrantClient, models

# Never change this: every stored point id derives from it, and a new namespace would orphan them all.
POINT_ID_NAMESPACE = uuid.UUID("6f1c2b7e-5d0a-4c55-9a43-3e7d2f8b91c4")

# Fields every point carries; the ones partitions are replaced and deleted by.
INDEXED_FIELDS = ("partition", "asset", "model_version")

UPSERT_BATCH = 256
SCROLL_PAGE = 1024
LOCK_FILE = ".medialens.lock"


@dataclass(frozen=True)
class VectorPoint:
    """One vector of an analysis; `item` names it within its partition and asset (e.g. a keyframe index),
    so that the same item of a re-run lands on the same point id."""

    item: str
    vector: Sequence[float]
    payload: Mapping[str, Any] = field(default_factory=dict)


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


def _held_clients() -> dict[tuple[int, str], QdrantClient]:
    table: dict[tuple[int, str], QdrantClient] | None = getattr(_held, "clients", None)
    if table is None:
        table = {}
        _held.clients = table
    return table


def _equality_filter(must: Mapping[str, Any] | None) -> models.Filter | None:
    """Payload equality conditions; a list/tuple/set value means "any of these"."""
    if not must:
        return None
    conditions: list[models.Condition] = []
    for key, value in must.items():
        match: models.Match
        if isinstance(value, list | tuple | set | frozenset):
            match = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        conditions.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=conditions)


def _dense_params(info: models.CollectionInfo, name: str) -> models.VectorParams:
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

    def __init__(self, collection: str, dim: int | None = None, distance: str = "Cosine") -> None:
        self.collection, self.dim, self.distance = collection, dim, distance
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
            structs.append(models.PointStruct(id=pid, vector=arr.tolist(), payload=payload))
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

    # -- connection ------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """Whether the folder lock applies (a server does its own concurrency control)."""
        return not self.url

    @contextmanager
    def client(self) -> Iterator[QdrantClient]:
        """A client for the duration of a block, because an embedded one must not outlive it: other
        processes wait on the folder lock until it closes. Nested calls in one thread reuse it, so
        wrap several calls in one `with` to open the embedded store once."""
        if not self.embedded:
            # The version check is a request per client, i.e. per call here, and only ever warns.
            server = QdrantClient(url=self.url, api_key=self.api_key, check_compatibility=False)
            try:
                yield server
            finally:
                server.close()
            return

        folder = Path(self.path).expanduser().absolute()
        key = (os.getpid(), str(folder))  # a forked child must not reuse its parent's client
        held = _held_clients()
        if key in held:  # the outer `with` owns the lock and closes the client
            yield held[key]
            return

        folder.mkdir(parents=True, exist_ok=True)
        lock_path = folder / LOCK_FILE
        # The lock file stays: deleting it would let two processes lock two different inodes.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, lock_path)
            try:
                local = QdrantClient(path=str(folder))
                held[key] = local
                try:
                    yield local
                finally:
                    del held[key]
                    local.close()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, lock_path: Path) -> None:
        # flock has no timeout of its own: poll non-blocking, backing off, until the deadline.
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"embedded Qdrant at {lock_path.parent} is still in use after {self.lock_timeout_s:g} s "
                        f"(lock {lock_path} held by another medialens process: a run, the CLI or the "
                        "webserver); retry when it finishes, or set QDRANT_URL to use a Qdrant server"
                    ) from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.5)

    # -- ids -------------------------------------------------------------------------------------
    @staticmethod
    def point_id(partition: str, asset: str, item: str, model_version: str) -> str:
        """Deterministic, so re-materialising overwrites instead of duplicating, and the model version
        is part of it so a new version's points never overwrite the old ones before they are complete."""
        return str(uuid.uuid5(POINT_ID_NAMESPACE, f"{partition}/{asset}/{item}/{model_version}"))

    # -- collections -----------------------------------------------------------------------------
    def ensure_collection(self, name: str, dim: int, distance: str = "Cosine") -> None:
        """Idempotent, so every asset can call it before writing; refuses a collection of another
        dimension or metric, which would otherwise fail on upsert or silently rank wrongly."""
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
            if not c.collection_exists(name):
                try:
                    c.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=metric))
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
            # Embedded Qdrant ignores keyword payload indexes (and warns on each), so only servers get them.
            if not self.embedded:
                existing = info.payload_schema or {}
                for field in INDEXED_FIELDS:
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
        self, collection: str, dim: int | None = None, distance: str = "Cosine"
    ) -> Iterator[PartitionWrites]:
        """Collect a step's per-partition writes and make them in one session when the block ends
        (also when it ends with the failure of some partitions: the others' points are written).

        Opening embedded Qdrant costs ~40 ms (qdrant-client parses its schema on every open), and a
        step over 20 media opened it twice per media; one session per step takes the lock once.
        The collection is created on first write (`dim`, or the first point's length)."""
        writes = PartitionWrites(collection, dim, distance)
        try:
            yield writes
        except Exception:
            if writes.pending:
                self.flush(writes)
            raise
        if writes.pending:
            self.flush(writes)

    def flush(self, writes: PartitionWrites) -> None:
        """Write everything `writes` collected, in one client session, and empty it."""
        with self.client() as c:
            dim = writes.dim
            if dim is not None:
                self.ensure_collection(writes.collection, dim, writes.distance)
            if c.collection_exists(writes.collection):
                self._write(c, writes)
        writes.clear()

    def _write(self, c: QdrantClient, writes: PartitionWrites) -> None:
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
            for start in range(0, len(w.structs), UPSERT_BATCH):
                c.upsert(collection, points=w.structs[start : start + UPSERT_BATCH], wait=True)
            c.delete(collection, points_selector=models.FilterSelector(filter=w.stale), wait=True)
        if writes.dropped:
            selector = _equality_filter({"partition": sorted(writes.dropped)})
            assert selector is not None
            c.delete(collection, points_selector=models.FilterSelector(filter=selector), wait=True)

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
        with self.client() as c:
            if not c.collection_exists(collection):
                return []
            result = c.query_points(
                collection,
                query=query,
                query_filter=_equality_filter(must),
                limit=limit,
                with_payload=True,
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
