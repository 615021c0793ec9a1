"""Embedded Qdrant on Qdrant Edge: the part of `QdrantClient`'s interface medialens uses, over one
Edge shard per collection (`<folder>/edge/<collection>/`).

Why Edge and not qdrant-client's local mode (`QdrantClient(path=...)`): local mode loads every point
into Python on each open and scans them all per query (`bench/search.py` at 100 000 text points:
~12 s per fresh `medialens search`, 240-310 ms per warm query, indexing quadratic). Edge is Qdrant's
own engine in-process: segments on disk with a write-ahead log, a shard opens in ~0.3 s at 100 000
points, a plain scan answers in ~30 ms and an HNSW index (built by `optimize`) in ~2 ms, keyword
payload indexes make filters cheap.

The adapter takes and returns qdrant-client's models, so `QdrantResource` runs the same code against
a server and against the folder. Like local mode, a shard admits one opener at a time (its WAL is
locked), which `QdrantResource`'s folder lock already serialises across processes.

Data written by local mode (`<folder>/collection/`) migrates into shards on the first open
(`migrate_local_mode`), vectors and payloads as they are: no model runs again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http import models as rest

EDGE_DIR = "edge"
LOCAL_MODE_DIR = "collection"  # where qdrant-client's local mode keeps its collections
LOCAL_MODE_BACKUP = "local-mode-before-edge"  # where migrated local-mode data is kept, for a rollback
CONFIG_FILE = "edge_config.json"  # written by Edge into every shard folder
MIGRATE_BATCH = 512

log = logging.getLogger("medialens")

_DISTANCES = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}


# -- qdrant-client models -> Edge models ----------------------------------------------------------
def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_condition(c) for c in items]


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return edge_filter(c)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({str(i) for i in c.has_id})
    if isinstance(c, models.FieldCondition):
        if c.match is not None:
            return qe.FieldCondition(key=c.key, match=_match(c.match))
        if isinstance(c.range, models.Range):
            r = c.range
            return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))
    raise TypeError(f"embedded Qdrant (Edge): filter condition {c!r} is not supported by medialens' adapter")


def _match(m: Any) -> Any:
    if isinstance(m, models.MatchValue):
        return qe.MatchValue(m.value)
    if isinstance(m, models.MatchAny):
        return qe.MatchAny(list(m.any))  # type: ignore[arg-type]
    if isinstance(m, models.MatchExcept):
        return qe.MatchExcept(list(m.except_))  # type: ignore[arg-type]
    if isinstance(m, models.MatchText):
        return qe.MatchText(m.text)
    raise TypeError(f"embedded Qdrant (Edge): match {m!r} is not supported by medialens' adapter")


def edge_filter(flt: models.Filter | None) -> Any:
    """The Edge twin of a qdrant-client filter (must/should/must_not of field matches, ranges, ids)."""
    if flt is None:
        return None
    return qe.Filter(must=_conditions(flt.must), should=_conditions(flt.should), must_not=_conditions(flt.must_not))


def _point_id(value: Any) -> str | int:
    return value if isinstance(value, int) else str(value)


# -- the results' shapes, as qdrant-client returns them -------------------------------------------
@dataclass(frozen=True)
class CollectionParams:
    vectors: models.VectorParams
    sparse_vectors: dict[str, models.SparseVectorParams] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionConfig:
    params: CollectionParams


@dataclass(frozen=True)
class CollectionInfo:
    """What `QdrantClient.get_collection` answers that medialens reads."""

    config: CollectionConfig
    points_count: int
    indexed_vectors_count: int
    segments_count: int
    payload_schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionName:
    name: str


@dataclass(frozen=True)
class Collections:
    collections: list[CollectionName]


def _sparse_params(params: models.SparseVectorParams | None) -> Any:
    idf = params is not None and params.modifier == models.Modifier.IDF
    return qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if idf else None)


def _vector(v: Any) -> Any:
    """A point's vector(s) for Edge: a dense list, or named dense lists and sparse vectors."""
    if isinstance(v, dict):
        return {name: _vector(x) for name, x in v.items()}
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    return [float(x) for x in v]


def _vector_out(v: Any) -> Any:
    """An Edge vector back in qdrant-client's shapes (sparse vectors as models.SparseVector)."""
    if isinstance(v, dict):
        return {name: _vector_out(x) for name, x in v.items()}
    if isinstance(v, qe.SparseVector):
        return models.SparseVector(indices=list(v.indices), values=list(v.values))
    return v


def shard_config(
    params: models.VectorParams,
    index_after_points: int | None = None,
    sparse: dict[str, models.SparseVectorParams] | None = None,
) -> Any:
    """A new shard's configuration. Qdrant's optimizer indexes a segment once it exceeds a size in
    KiB; `index_after_points` says it in points of this collection's dimension."""
    optimizers = None
    if index_after_points is not None:
        kib = max(1, index_after_points * params.size * 4 // 1024)
        optimizers = qe.EdgeOptimizersConfig(indexing_threshold=kib)
    dense = qe.EdgeVectorParams(size=params.size, distance=_distance(params))
    sparse_vectors = {n: _sparse_params(p) for n, p in (sparse or {}).items()} or None
    return qe.EdgeConfig(vectors=dense, sparse_vectors=sparse_vectors, optimizers=optimizers)


class EdgeClient:
    """One session on the Edge shards of a folder; open shards stay open until `close`.
    `index_after_points` sets when new collections build their HNSW index (see `optimize`)."""

    def __init__(self, folder: str | Path, index_after_points: int | None = None) -> None:
        self.root = Path(folder) / EDGE_DIR
        self.index_after_points = index_after_points
        self._shards: dict[str, Any] = {}

    # -- shards --------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"embedded Qdrant: invalid collection name {name!r}")
        return self.root / name

    def _shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is None:
            if not self.collection_exists(name):
                raise ValueError(f"embedded Qdrant: collection {name!r} does not exist in {self.root}")
            shard = qe.EdgeShard.load(str(self._dir(name)))
            self._shards[name] = shard
        return shard

    def close(self) -> None:
        """Flush and release every shard this session opened (their WAL locks go with them)."""
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            try:
                shard.flush()
            finally:
                shard.close()

    # -- collections ---------------------------------------------------------------------------
    def collection_exists(self, name: str) -> bool:
        return (self._dir(name) / CONFIG_FILE).is_file()

    def get_collections(self) -> Collections:
        names = sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).is_file()) if self.root.is_dir() else []
        return Collections([CollectionName(n) for n in names])

    def create_collection(
        self,
        name: str,
        vectors_config: models.VectorParams,
        sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
        **_: Any,
    ) -> bool:
        """Created in a scratch folder and renamed into place, so a kill never leaves half a shard."""
        if self.collection_exists(name):
            raise ValueError(f"embedded Qdrant: collection {name!r} already exists")
        final = self._dir(name)
        scratch = self.root / f".creating-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.root.mkdir(parents=True, exist_ok=True)
        config = shard_config(vectors_config, self.index_after_points, sparse_vectors_config)
        qe.EdgeShard.create(str(scratch), config).close()
        if final.exists():  # a leftover without a config: an older interrupted create
            shutil.rmtree(final)
        os.rename(scratch, final)
        return True

    def delete_collection(self, name: str) -> bool:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        if not self._dir(name).exists():
            return False
        shutil.rmtree(self._dir(name))
        return True

    def get_collection(self, name: str) -> CollectionInfo:
        shard = self._shard(name)
        info = shard.info()
        raw = json.loads((self._dir(name) / CONFIG_FILE).read_bytes())
        vectors = raw.get("vectors", {}).get("") or next(iter(raw.get("vectors", {}).values()), None)
        if not vectors:
            raise ValueError(f"embedded Qdrant: collection {name!r} has no dense vector")
        params = models.VectorParams(size=int(vectors["size"]), distance=models.Distance(vectors["distance"]))
        sparse = {
            n: models.SparseVectorParams(modifier=models.Modifier.IDF if (p or {}).get("modifier") == "idf" else None)
            for n, p in (raw.get("sparse_vectors") or {}).items()
        }
        return CollectionInfo(
            config=CollectionConfig(CollectionParams(params, sparse)),
            points_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count,
            segments_count=info.segments_count,
            payload_schema=dict(info.payload_schema),
        )

    def update_collection(
        self, collection_name: str, sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None, **_: Any
    ) -> bool:
        """Only what medialens changes on an existing collection: adding sparse vectors."""
        for n, p in (sparse_vectors_config or {}).items():
            modifier = qe.Modifier.Idf if p.modifier == models.Modifier.IDF else None
            self._shard(collection_name).update(qe.UpdateOperation.create_sparse_vector(n, modifier=modifier))
        return True

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None, **_: Any) -> None:
        if field_schema not in (None, models.PayloadSchemaType.KEYWORD, "keyword"):
            raise TypeError(f"embedded Qdrant (Edge): only keyword payload indexes are used, not {field_schema!r}")
        self._shard(collection_name).update(
            qe.UpdateOperation.create_field_index(field_name, qe.PayloadSchemaType.Keyword)
        )

    def optimize(self, collection_name: str) -> bool:
        """Run Qdrant's optimizers until none is due: build the HNSW index of segments past the
        indexing threshold, vacuum deleted points, merge small segments. Blocking: nothing when
        nothing is due, ~1 min per 100 000 512-d points when a segment is indexed. Returns whether
        anything was done."""
        return bool(self._shard(collection_name).optimize())

    # -- points --------------------------------------------------------------------------------
    def upsert(self, collection_name: str, points: Sequence[models.PointStruct], wait: bool = True, **_: Any) -> None:
        edge_points = [qe.Point(id=_point_id(p.id), vector=_vector(p.vector), payload=p.payload or {}) for p in points]
        if edge_points:
            self._shard(collection_name).update(qe.UpdateOperation.upsert_points(edge_points))

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any) -> None:
        shard = self._shard(collection_name)
        if isinstance(points_selector, models.FilterSelector):
            shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter(points_selector.filter)))
        elif isinstance(points_selector, models.PointIdsList):
            shard.update(qe.UpdateOperation.delete_points([_point_id(i) for i in points_selector.points]))
        elif isinstance(points_selector, list):
            shard.update(qe.UpdateOperation.delete_points([_point_id(i) for i in points_selector]))
        else:
            raise TypeError(f"embedded Qdrant (Edge): points selector {points_selector!r} is not supported")

    def count(
        self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **_: Any
    ) -> models.CountResult:
        n = self._shard(collection_name).count(qe.CountRequest(exact=True, filter=edge_filter(count_filter)))
        return models.CountResult(count=int(n))

    def query_points(
        self,
        collection_name: str,
        query: Sequence[float] | models.SparseVector,
        using: str | None = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        with_payload: bool = True,
        with_vectors: bool = False,
        search_params: models.SearchParams | None = None,
        **_: Any,
    ) -> rest.QueryResponse:
        params = None
        if search_params is not None:
            params = qe.SearchParams(hnsw_ef=search_params.hnsw_ef, exact=bool(search_params.exact))
        scored = self._shard(collection_name).query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(_vector(query), using=using),
                filter=edge_filter(query_filter),
                with_payload=with_payload,
                with_vector=with_vectors,
                params=params,
            )
        )
        return rest.QueryResponse(
            points=[
                models.ScoredPoint(
                    id=_point_id(p.id),
                    version=int(p.version),
                    score=float(p.score),
                    payload=p.payload,
                    vector=_vector_out(p.vector),
                )
                for p in scored
            ]
        )

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: bool = True,
        with_vectors: bool = False,
        **_: Any,
    ) -> tuple[list[models.Record], str | int | None]:
        records, next_offset = self._shard(collection_name).scroll(
            qe.ScrollRequest(
                offset=_point_id(offset) if offset is not None else None,
                limit=limit,
                filter=edge_filter(scroll_filter),
                with_payload=with_payload,
                with_vector=with_vectors,
            )
        )
        out = [models.Record(id=_point_id(r.id), payload=r.payload, vector=_vector_out(r.vector)) for r in records]
        return out, (_point_id(next_offset) if next_offset is not None else None)

    def retrieve(
        self, collection_name: str, ids: Iterable[Any], with_payload: bool = True, with_vectors: bool = False, **_: Any
    ) -> list[models.Record]:
        records = self._shard(collection_name).retrieve(
            [_point_id(i) for i in ids], with_payload=with_payload, with_vector=with_vectors
        )
        return [models.Record(id=_point_id(r.id), payload=r.payload, vector=_vector_out(r.vector)) for r in records]


def _distance(params: models.VectorParams) -> Any:
    try:
        return _DISTANCES[models.Distance(params.distance)]
    except KeyError:
        raise ValueError(f"embedded Qdrant (Edge): distance {params.distance!r} is not supported") from None


# -- the one-time move from qdrant-client's local mode --------------------------------------------
def local_mode_data(folder: Path) -> bool:
    """Whether `folder` still holds collections written by qdrant-client's local mode."""
    old = folder / LOCAL_MODE_DIR
    return old.is_dir() and any(p.is_dir() for p in old.iterdir())


def migrate_local_mode(
    folder: Path, indexed_fields: Sequence[str], index_after_points: int | None = None
) -> dict[str, int]:
    """Copy every local-mode collection into an Edge shard (vectors and payloads as stored, ids kept),
    then move the local-mode files aside to `<folder>/local-mode-before-edge/`. The caller holds the
    folder lock. Each collection lands by an atomic rename, so a kill at any point leaves the old
    data in place and the next open finishes the job. Returns points per migrated collection."""
    from qdrant_client import QdrantClient

    edge = EdgeClient(folder)
    edge.root.mkdir(parents=True, exist_ok=True)
    moved: dict[str, int] = {}
    started = time.monotonic()
    local = QdrantClient(path=str(folder))
    try:
        for col in local.get_collections().collections:
            name = col.name
            if edge.collection_exists(name):
                continue  # done before an interruption
            params = local.get_collection(name).config.params.vectors
            if not isinstance(params, models.VectorParams):
                raise ValueError(f"embedded Qdrant: local-mode collection {name!r} has named vectors; cannot migrate")
            scratch = edge.root / f".migrating-{name}"
            if scratch.exists():
                shutil.rmtree(scratch)
            shard = qe.EdgeShard.create(str(scratch), shard_config(params, index_after_points))
            try:
                for f in indexed_fields:
                    shard.update(qe.UpdateOperation.create_field_index(f, qe.PayloadSchemaType.Keyword))
                offset: Any = None
                n = 0
                while True:
                    records, offset = local.scroll(
                        name, limit=MIGRATE_BATCH, offset=offset, with_payload=True, with_vectors=True
                    )
                    points = [
                        qe.Point(id=_point_id(r.id), vector=_vector(r.vector), payload=r.payload or {}) for r in records
                    ]
                    if points:
                        shard.update(qe.UpdateOperation.upsert_points(points))
                    n += len(points)
                    if offset is None or not records:
                        break
                shard.optimize()  # searchable at full speed from the first query
                shard.flush()
            finally:
                shard.close()
            os.rename(scratch, edge.root / name)
            moved[name] = n
    finally:
        local.close()
    backup = folder / LOCAL_MODE_BACKUP
    backup.mkdir(exist_ok=True)
    for entry in (LOCAL_MODE_DIR, "meta.json"):
        if (folder / entry).exists():
            if (backup / entry).exists():
                shutil.rmtree(backup / entry) if (backup / entry).is_dir() else (backup / entry).unlink()
            os.rename(folder / entry, backup / entry)
    total = sum(moved.values())
    log.warning(
        f"embedded Qdrant at {folder}: moved {total} points of {len(moved)} collection(s) "
        f"({', '.join(f'{k} {v}' for k, v in moved.items()) or 'none'}) from qdrant-client's local mode to "
        f"Qdrant Edge in {time.monotonic() - started:.1f} s (once); the old files are in {backup} and can be "
        "deleted once search works"
    )
    return moved
