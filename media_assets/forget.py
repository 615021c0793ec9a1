"""Forget a media file or a person: every record derived from it is deleted, not hidden.

A deletion request must leave nothing to find (DESIGN: person data). What each forget covers:

- media: the stored original, its keyframes and audio, every analysis table and manifest, its
  points in every Qdrant collection, cached model results for its keyframes and audio, its
  Dagster partition and the runs that analysed only it (their logs hold previews of its text),
  and its faces in the person dossiers (re-clustered without them; decisions about its faces are
  dropped from the log). Runs that covered several media at once (backfill chunks) also hold
  other media's history, so they are kept and reported.
- person: its face rows (with their thumbnail crops) in every media's faces table, their vectors,
  the cached face results of those keyframes, the earlier dossier runs (their metadata may show
  the name), and the person itself. A `ForgetPerson` decision keeps those faces out of every
  future clustering and out of re-analysed faces tables, by face id and a non-invertible digest of
  the embedding, never the embedding itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from media_assets.analysis import people as persons
from media_assets.partitions import MEDIA_PARTITIONS_NAME
from media_assets.people_log import (
    DOSSIERS,
    append_decision,
    drop_names,
    remember_forgotten_digests,
    scrub_media,
)
from resources.inference_cache import InferenceCache, file_digest
from resources.qdrant import QdrantResource
from resources.store import MediaStore

PARTITION_TAG = "dagster/partition"
# Store folders that are not per-asset output folders.
_NOT_ASSET_DIRS = {"media", "manifests", "sources", "incoming", "person_dossiers", "reports"}


class NothingToForget(KeyError):
    """No media or person with that id."""


@dataclass
class Forgotten:
    """What a forget deleted (the `forget --json` object)."""

    what: str  # "media" | "person"
    id: str
    files: list[str] = field(default_factory=list)
    vectors: int = 0
    cache_entries: int = 0
    runs_deleted: int = 0
    face_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rm(path: Path, store: MediaStore, out: Forgotten) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        return
    out.files.append(str(path.relative_to(store.path)) if path.is_relative_to(store.path) else str(path))


def _input_digests(store: MediaStore, key: str) -> list[str]:
    """Content hashes of the files models read for this media (the inference cache's keys)."""
    paths: list[str] = []
    frames = store.read_manifest("keyframes", key) or {}
    if frames.get("count") and frames.get("table") and Path(frames["table"]).exists():
        paths += store.read_table(frames["table"]).column("path").to_pylist()
    audio = store.read_manifest("audio_track", key) or {}
    if audio.get("path"):
        paths.append(audio["path"])
    return [file_digest(p) for p in paths if Path(p).exists()]


def _forget_cached(cache: InferenceCache, digests: list[str], asset: str | None, out: Forgotten) -> int:
    try:
        return cache.forget_inputs(digests, asset)
    except Exception as exc:  # Redis down: say so; the entries expire after the cache's TTL
        out.notes.append(
            f"inference cache unreachable ({type(exc).__name__}): its entries expire after {cache.ttl_s} s"
        )
        return 0


def _delete_runs(instance: DagsterInstance, run_filter: RunsFilter) -> int:
    records = instance.get_run_records(run_filter)
    for r in records:
        instance.delete_run(r.dagster_run.run_id)
    return len(records)


def _runs_covering(instance: DagsterInstance, key: str, order: list[str]) -> int:
    """Runs over a range of partitions (backfill chunks) that include `key`."""
    if key not in order:
        return 0
    at = order.index(key)
    count = 0
    for r in instance.get_run_records(RunsFilter(tags={ASSET_PARTITION_RANGE_START_TAG: order})):
        tags = r.dagster_run.tags
        start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
        if start in order and end in order and order.index(start) <= at <= order.index(end):
            count += 1
    return count


def forget_media(
    key: str,
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
) -> Forgotten:
    """Delete everything derived from one media file (see the module docstring), then re-cluster."""
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    media = store.read_manifest("media_file", key)
    if key not in order and media is None and not store.source_path(key).exists():
        raise NothingToForget(key)
    out = Forgotten("media", key)
    digests = _input_digests(store, key)
    out.vectors = qdrant.delete_partition(key)
    out.cache_entries = _forget_cached(cache, digests, None, out)
    original = (media or {}).get("path")
    if original:
        _rm(Path(original), store, out)
    for asset_dir in sorted(p for p in store.path.iterdir() if p.is_dir() and p.name not in _NOT_ASSET_DIRS):
        for version_dir in asset_dir.iterdir():
            for path in [version_dir / key, *version_dir.glob(f"{key}.*")]:
                _rm(path, store, out)
    for manifest in (store.path / "manifests").glob(f"*/{key}.json"):
        _rm(manifest, store, out)
    _rm(store.source_path(key), store, out)
    for report in (store.path / "reports").glob("*.json") if (store.path / "reports").exists() else []:
        if key in report.read_text(errors="ignore"):
            _rm(report, store, out)  # a re-analysis report lists this media's changes
    decisions = scrub_media(store, key)
    if decisions:
        out.notes.append(f"{decisions} person decision(s) about its faces removed")
    out.runs_deleted = _delete_runs(instance, RunsFilter(tags={PARTITION_TAG: key}))
    shared = _runs_covering(instance, key, order)
    if shared:
        out.notes.append(
            f"{shared} run(s) over several media (backfill chunks) still hold its materialisation events; "
            "delete them in the Dagster UI if their logs must go too"
        )
    if key in order:
        instance.delete_dynamic_partition(MEDIA_PARTITIONS_NAME, key)
    refresh_people()
    return out


def forget_person(
    person_id: str,
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], dict[str, Any]],
) -> Forgotten:
    """Delete one person's faces everywhere and keep them out of future clustering, then re-cluster."""
    manifest = store.read_manifest(DOSSIERS, "library")
    if not manifest:
        raise NothingToForget(person_id)
    apps = store.read_table(manifest["tables"]["appearances"]).to_pylist()
    face_ids = sorted({a["face_id"] for a in apps if a["person_id"] == person_id})
    if not face_ids:
        raise NothingToForget(person_id)
    out = Forgotten("person", person_id)
    append_decision(store, persons.ForgetPerson(person_id, tuple(face_ids)))  # durable before anything goes
    names = drop_names(store, person_id)
    if names:
        out.notes.append(f"{names} name decision(s) removed from the log")
    by_media: dict[str, set[str]] = {}
    for f in face_ids:
        by_media.setdefault(f.split("/", 1)[0], set()).add(f)
    _remember_digests(store, by_media)  # read from the rows before they go: the state keeps them out
    for key, ids in sorted(by_media.items()):
        out.face_rows += drop_face_rows(store, key, ids)
        out.vectors += qdrant.delete_where("faces", {"partition": key}, "face_id", sorted(ids))
        frames = store.read_manifest("keyframes", key) or {}
        kfs = {int(f.rsplit("/", 2)[1]) for f in ids}
        if frames.get("table") and Path(frames["table"]).exists():
            paths = [r["path"] for r in store.read_table(frames["table"]).to_pylist() if r["idx"] in kfs]
            digests = [file_digest(p) for p in paths if Path(p).exists()]
            out.cache_entries += _forget_cached(cache, digests, "faces", out)
    dossier_runs = {
        r.event_log_entry.run_id
        for r in instance.fetch_materializations(AssetKey(DOSSIERS), limit=10_000).records
        if r.event_log_entry.run_id
    }
    for run_id in dossier_runs:
        instance.delete_run(run_id)
    out.runs_deleted = len(dossier_runs)
    refresh_people()
    return out


def _remember_digests(store: MediaStore, by_media: dict[str, set[str]]) -> None:
    """Keep the embedding digests of these faces (read from their rows before the rows go)."""
    digests: set[str] = set()
    for key, ids in by_media.items():
        manifest = store.read_manifest("faces", key)
        if not manifest or not manifest.get("table") or not Path(manifest["table"]).exists():
            continue
        for r in store.read_table(manifest["table"]).select(["kf", "face", "embedding"]).to_pylist():
            if f"{key}/{r['kf']}/{r['face']}" in ids:
                digests.add(persons.embedding_digest(r["embedding"]))
    remember_forgotten_digests(store, digests)


def drop_face_rows(store: MediaStore, key: str, face_ids: set[str]) -> int:
    """Rewrite one media's faces table without those faces (their crops go with the rows)."""
    manifest = store.read_manifest("faces", key)
    if not manifest or not manifest.get("table") or not Path(manifest["table"]).exists():
        return 0
    table = store.read_table(manifest["table"])
    ids = [f"{key}/{kf}/{face}" for kf, face in zip(table["kf"].to_pylist(), table["face"].to_pylist(), strict=True)]
    keep = pc.invert(pc.is_in(pa.array(ids), value_set=pa.array(sorted(face_ids))))
    kept = table.filter(keep)
    dropped = table.num_rows - kept.num_rows
    if dropped:
        store.write_table("faces", manifest["version"], key, kept)
        preview = [
            [round(r["t"], 1), [round(v) for v in r["box"]], round(r["score"], 2)]
            for r in kept.select(["t", "box", "score"]).to_pylist()[:15]
        ]
        store.write_manifest(
            "faces",
            key,
            {
                **manifest,
                "faces": kept.num_rows,
                "vectors": kept.num_rows,
                "preview": preview,
                "forgotten_faces": dropped,
            },
        )
    return dropped


__all__ = ["Forgotten", "NothingToForget", "drop_face_rows", "forget_media", "forget_person"]
