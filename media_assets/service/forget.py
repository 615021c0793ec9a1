"""Forget a media file or a person: every record derived from it is deleted, not hidden.

A deletion request must leave nothing to find (DESIGN: person data). What each forget covers:

- media: the stored original, its keyframes and audio, every analysis table and manifest, its
  points in every Qdrant collection, cached model results for its keyframes and audio, its
  Dagster partition and the runs that analysed only it (their logs hold previews of its text),
  and its faces in the person dossiers (re-clustered without them; decisions about its faces are
  dropped from the log), and the safety review decisions about it (plumbing/review_log.py). Runs
  that covered several media at once (backfill chunks) also hold other media's history, so they
  are kept and reported.
- person: its face rows (with their thumbnail crops) in every media's faces table, their vectors,
  the cached face results of those keyframes, the earlier dossier runs (their metadata may show
  the name), and the person itself. A `ForgetPerson` decision keeps those faces out of every
  future clustering and out of re-analysed faces tables, by face id and a non-invertible digest of
  the embedding, never the embedding itself.

Crash safety: a forget may be killed at any moment (SIGKILL, Ctrl-C, a closed terminal) and must
still end with everything deleted. Several things it needs are destroyed by the deletion itself
(the keyframe and audio files whose digests key the inference cache, the dossier rows naming a
person's faces), so before deleting anything it writes an intent journal,
`<store>/forget/<media|person>-<id>.json`, holding just the ids, digests and paths needed to finish.
Every step then finds its own targets gone when it was already done, so a rerun (`forget` again, or
`resume_unfinished`) simply replays all steps from the journal; the journal goes last. The journal is
person data too: it holds nothing more than that and is deleted when the forget is complete.

For media the partition goes first, so no sensor, backfill or queued run can materialise the media
again while its files are being deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from media_assets.analysis import people as persons
from media_assets.plumbing import review_log
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.people_log import (
    DOSSIERS,
    append_decision,
    drop_names,
    load_decisions,
    remember_forgotten_digests,
    scrub_media,
)
from resources.faults import fault_point
from resources.inference_cache import InferenceCache, file_digest
from resources.qdrant import QdrantResource
from resources.store import MediaStore

PARTITION_TAG = "dagster/partition"
JOURNAL_DIR = "forget"
JOURNAL_FORMAT = 1
RESUMED_NOTE = "resumed an interrupted forget: finished what it had not deleted yet"
# Store folders that are not per-asset output folders.
_NOT_ASSET_DIRS = {
    "media",
    "manifests",
    "sources",
    "incoming",
    "person_dossiers",
    review_log.REVIEW_DIR,
    "reports",
    JOURNAL_DIR,
}
# Media keys and person ids are `[A-Za-z0-9_-]`; anything else cannot name a journal file safely.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]
_IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
# A journal write takes milliseconds: an older temporary file is what a killed write left.
_STALE_TEMP_S = 60.0

MEDIA_STEPS = (
    "journal",
    "partition",
    "vectors",
    "cache",
    "files",
    "manifests",
    "source",
    "decisions",
    "runs",
    "dossiers",
)
PERSON_STEPS = ("journal", "decision", "names", "digests", "faces", "vectors", "cache", "runs", "dossiers")
"""Fault-injection step names: `MEDIALENS_FAULT=forget:media.<step>` or `forget:person.<step>`
fires once that step is done (see `_fault_point`)."""


class NothingToForget(KeyError):
    """No media or person with that id."""


@dataclass
class Forgotten:
    """What this forget invocation deleted (the `forget --json` object)."""

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


# -- test hook ------------------------------------------------------------------------------------
def _fault_point(step: str) -> None:
    """Test hook (resources/faults.py): `MEDIALENS_FAULT=forget:<step>` SIGKILLs this process once
    `step` (e.g. `media.files`) is done, `forget:<step>:sigint` sends it Ctrl-C instead, so tests
    can prove that a rerun finishes a forget killed there."""
    fault_point(f"forget:{step}")


# -- the journal ----------------------------------------------------------------------------------
def journal_dir(store: MediaStore) -> Path:
    return store.path / JOURNAL_DIR


def journal_path(store: MediaStore, what: str, ident: str) -> Path:
    """Where the intent journal of one forget lives; an id that could not be a media key or person
    id cannot name a file either, and is nothing to forget."""
    if not _SAFE_ID.match(ident):
        raise NothingToForget(ident)
    return journal_dir(store) / f"{what}-{ident}.json"


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` survive a power loss, not only a killed process."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_journal(path: Path, journal: dict[str, Any]) -> None:
    """Write the whole journal or nothing: temp file beside it, fsync, rename, fsync the folder.
    (Owner-only permissions: it names person data.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(journal, indent=1, sort_keys=True).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_journal(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        journal: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # written atomically, so this is damage, not a cut-short write
        raise ValueError(f"forget journal {path} is not valid JSON ({exc}): fix or delete it") from exc
    if journal.get("format") != JOURNAL_FORMAT:
        raise ValueError(f"forget journal {path} has format {journal.get('format')!r}, not {JOURNAL_FORMAT}")
    return journal


def _drop_journal(path: Path) -> None:
    if path.exists():
        path.unlink()
        _fsync_dir(path.parent)


def _sweep_journal_temps(store: MediaStore, min_age_s: float = _STALE_TEMP_S) -> None:
    """Remove temporary journals a killed write left (they name person data and were never used:
    nothing is deleted before the journal is in place). Young ones may be another forget's write."""
    folder = journal_dir(store)
    if not folder.is_dir():
        return
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
        except FileNotFoundError:
            pass


def pending_forgets(store: MediaStore) -> list[tuple[str, str]]:
    """(what, id) of every forget that was interrupted and not yet finished: a sensor that meets
    such a media key should leave it alone (or call `resume_unfinished`) rather than analyse it."""
    folder = journal_dir(store)
    if not folder.is_dir():
        return []
    out: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.json")):
        what, _, ident = path.stem.partition("-")
        if what in ("media", "person") and ident:
            out.append((what, ident))
    return out


# -- shared helpers -------------------------------------------------------------------------------
def _rm(path: Path, store: MediaStore, out: Forgotten) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return
    out.files.append(str(path.relative_to(store.path)) if path.is_relative_to(store.path) else str(path))


def _table_of(store: MediaStore, asset: str, key: str) -> pa.Table | None:
    manifest = store.read_manifest(asset, key) or {}
    table = manifest.get("table")
    return store.read_table(table) if table and Path(table).exists() else None


def _keyframe_paths(store: MediaStore, key: str) -> dict[int, str]:
    frames = _table_of(store, "keyframes", key)
    if frames is None:
        return {}
    return {int(r["idx"]): str(r["path"]) for r in frames.select(["idx", "path"]).to_pylist()}


def _digests(paths: Iterable[str]) -> list[str]:
    return sorted({file_digest(p) for p in paths if Path(p).exists()})


def _forget_cached(cache: InferenceCache, digests: list[str], asset: str | None, out: Forgotten) -> int:
    try:
        return cache.forget_inputs(digests, asset)
    except Exception as exc:  # Redis down: say so; the entries expire after the cache's TTL
        out.notes.append(
            f"inference cache unreachable ({type(exc).__name__}): its entries expire after {cache.ttl_s} s"
        )
        return 0


def _runs_covering(instance: DagsterInstance, key: str, order: list[str]) -> list[str]:
    """Ids of runs over a range of partitions (backfill chunks) that include `key`."""
    if key not in order:
        return []
    at = order.index(key)
    ids = []
    for r in instance.get_run_records(RunsFilter(tags={ASSET_PARTITION_RANGE_START_TAG: order})):
        tags = r.dagster_run.tags
        start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
        if start in order and end in order and order.index(start) <= at <= order.index(end):
            ids.append(r.dagster_run.run_id)
    return ids


def _refresh_dossiers(refresh_people: Callable[[], Any], store: MediaStore, face_ids: set[str], who: str) -> None:
    """Re-cluster, then make sure none of `face_ids` survived in the dossiers: if one did (the media
    was added again while this ran), the journal stays and the next run deletes it again."""
    refresh_people()
    manifest = store.read_manifest(DOSSIERS, "library")
    if not manifest or not face_ids:
        return
    left = set(store.read_table(manifest["tables"]["appearances"]).column("face_id").to_pylist()) & face_ids
    if left:
        raise RuntimeError(
            f"forget {who}: the re-clustered dossiers still hold {len(left)} of its faces (added again while it "
            "ran?); run the same forget again to finish"
        )


# -- media ----------------------------------------------------------------------------------------
def _known_media(store: MediaStore, key: str, order: list[str]) -> bool:
    """Anything of this media left to delete? (A run that was in progress during an earlier forget
    may have written a manifest after it.)"""
    return key in order or store.source_path(key).exists() or any((store.path / "manifests").glob(f"*/{key}.json"))


def _media_journal(instance: DagsterInstance, store: MediaStore, key: str, order: list[str]) -> dict[str, Any]:
    """What forgetting `key` needs that the forget destroys (cache keys are digests of files it
    deletes; the stored original is found through manifests it deletes)."""
    media = store.read_manifest("media_file", key) or {}
    audio = store.read_manifest("audio_track", key) or {}
    try:
        source = store.read_source(key)
    except FileNotFoundError:
        source = {}
    paths = [*(p for p in [media.get("path")] if p)]
    if source.get("sha256") and source.get("suffix"):
        paths.append(str(store.media_path(source["sha256"], source["suffix"])))
    incoming = source.get("path") if source.get("move") else None
    if incoming and Path(incoming).is_relative_to(store.path):  # the sensor's copy, ours to delete
        paths.append(incoming)
    faces = _table_of(store, "faces", key)
    face_ids = set()
    if faces is not None:
        face_ids = {
            persons.face_id(key, kf, face)
            for kf, face in zip(faces["kf"].to_pylist(), faces["face"].to_pylist(), strict=True)
        }
    dossiers = store.read_manifest(DOSSIERS, "library")
    if dossiers:
        apps = store.read_table(dossiers["tables"]["appearances"]).column("face_id").to_pylist()
        face_ids |= {f for f in apps if f.startswith(key + "/")}
    return {
        "format": JOURNAL_FORMAT,
        "what": "media",
        "id": key,
        "cache_digests": _digests([*_keyframe_paths(store, key).values(), *[p for p in [audio.get("path")] if p]]),
        "originals": sorted(set(paths)),
        "face_ids": sorted(face_ids),
        "shared_runs": _runs_covering(instance, key, order),
    }


def forget_media(
    key: str,
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
) -> Forgotten:
    """Delete everything derived from one media file (see the module docstring), then re-cluster;
    resumes an interrupted forget of it from its journal."""
    path = journal_path(store, "media", key)
    out = Forgotten("media", key)
    journal = _read_journal(path)
    if journal is not None:
        out.notes.append(RESUMED_NOTE)
    else:
        order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
        if not _known_media(store, key, order):
            raise NothingToForget(key)
        journal = _media_journal(instance, store, key, order)
        _write_journal(path, journal)
    _fault_point("media.journal")
    _forget_media_steps(key, journal, instance, store, qdrant, cache, refresh_people, out)
    _drop_journal(path)
    return out


def _forget_media_steps(
    key: str,
    journal: dict[str, Any],
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
    out: Forgotten,
) -> None:
    # partition first: from here no sensor, backfill or queued run can target the media again
    if key in instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME):
        instance.delete_dynamic_partition(MEDIA_PARTITIONS_NAME, key)
    for r in instance.get_run_records(RunsFilter(tags={PARTITION_TAG: key}, statuses=_WAITING)):
        instance.report_run_canceled(r.dagster_run, f"medialens forget media {key}: the media is being deleted")
    running = instance.get_run_records(RunsFilter(tags={PARTITION_TAG: key}, statuses=_IN_PROGRESS))
    if running:
        out.notes.append(
            f"{len(running)} run(s) of it were in progress ({', '.join(r.dagster_run.run_id for r in running)}): "
            "they fail at their next step (its source record is gone); if one wrote anything before, "
            f"run `medialens forget media {key}` again once it has ended"
        )
    _fault_point("media.partition")

    out.vectors += qdrant.delete_partition(key)
    _fault_point("media.vectors")

    out.cache_entries += _forget_cached(cache, list(journal["cache_digests"]), None, out)
    _fault_point("media.cache")

    for original in journal["originals"]:
        _rm(Path(original), store, out)
    for asset_dir in sorted(store.path.iterdir()):
        # dotted entries are other code's scratch space; journals and shared folders are not assets
        if not asset_dir.is_dir() or asset_dir.name.startswith(".") or asset_dir.name in _NOT_ASSET_DIRS:
            continue
        for version_dir in (d for d in asset_dir.iterdir() if d.is_dir()):
            # `.<key>.*`: what a write killed half way left under a temporary name
            for p in [version_dir / key, *version_dir.glob(f"{key}.*"), *version_dir.glob(f".{key}.*")]:
                _rm(p, store, out)
    reports = store.path / "reports"
    for report in sorted(reports.glob("*.json")) if reports.is_dir() else []:
        if key in report.read_text(errors="ignore"):
            _rm(report, store, out)  # a re-analysis report lists this media's changes
    _fault_point("media.files")

    manifests = store.path / "manifests"
    for manifest in [*manifests.glob(f"*/{key}.json"), *manifests.glob(f"*/.{key}.json.*")]:
        _rm(manifest, store, out)
    _fault_point("media.manifests")

    _rm(store.source_path(key), store, out)
    for leftover in store.source_path(key).parent.glob(f".{key}.json.*"):
        _rm(leftover, store, out)
    _fault_point("media.source")

    decisions = scrub_media(store, key)
    if decisions:
        out.notes.append(f"{decisions} person decision(s) about its faces removed")
    _scrub_person_journals(store, key)
    reviews = review_log.scrub_media(store, key)  # an atomic rewrite: a rerun finds nothing left to drop
    if reviews:
        out.notes.append(f"{reviews} safety review decision(s) about it removed")
    _fault_point("media.decisions")

    done = instance.get_run_records(RunsFilter(tags={PARTITION_TAG: key}))
    for r in done:
        if r.dagster_run.status not in _IN_PROGRESS:  # a running run's record is still being written
            instance.delete_run(r.dagster_run.run_id)
            out.runs_deleted += 1
    shared = [run_id for run_id in journal["shared_runs"] if instance.has_run(run_id)]
    if shared:
        out.notes.append(
            f"{len(shared)} run(s) over several media (backfill chunks) still hold its materialisation events; "
            "delete them in the Dagster UI if their logs must go too"
        )
    _fault_point("media.runs")

    # dossiers are clustered over the partitions, so this drops its faces and their ids everywhere
    _refresh_dossiers(refresh_people, store, set(journal["face_ids"]), f"media {key}")
    _fault_point("media.dossiers")


def _scrub_person_journals(store: MediaStore, key: str) -> None:
    """An unfinished person forget must not keep naming a media that is being forgotten (its
    journal would outlive the media's forget with the key in it)."""
    prefix = key + "/"
    for what, ident in pending_forgets(store):
        path = journal_path(store, what, ident)
        journal = _read_journal(path) if what == "person" else None
        if not journal:
            continue
        faces = {
            m: kept
            for m, ids in journal["faces"].items()
            if m != key and (kept := [f for f in ids if not f.startswith(prefix)])
        }
        if faces != journal["faces"]:
            _write_journal(path, {**journal, "faces": faces})


# -- person ---------------------------------------------------------------------------------------
def _person_journal(store: MediaStore, person_id: str) -> dict[str, Any]:
    """What forgetting `person_id` needs that the forget destroys: its face ids (the re-clustered
    dossiers no longer name them), their embedding digests and the keyframe digests of their cached
    face results (both read from face rows the forget deletes)."""
    manifest = store.read_manifest(DOSSIERS, "library")
    if not manifest:
        raise NothingToForget(person_id)
    apps = store.read_table(manifest["tables"]["appearances"]).select(["face_id", "person_id"]).to_pylist()
    face_ids = sorted({a["face_id"] for a in apps if a["person_id"] == person_id})
    if not face_ids:
        raise NothingToForget(person_id)
    by_media: dict[str, list[str]] = {}
    for f in face_ids:
        by_media.setdefault(f.split("/", 1)[0], []).append(f)
    embedding_digests: set[str] = set()
    cache_digests: set[str] = set()
    for key, ids in by_media.items():
        wanted = set(ids)
        table = _table_of(store, "faces", key)
        if table is not None:
            for r in table.select(["kf", "face", "embedding"]).to_pylist():
                if persons.face_id(key, r["kf"], r["face"]) in wanted:
                    embedding_digests.add(persons.embedding_digest(r["embedding"]))
        frames = _keyframe_paths(store, key)
        cache_digests.update(_digests(frames[kf] for kf in {int(f.rsplit("/", 2)[1]) for f in ids} if kf in frames))
    return {
        "format": JOURNAL_FORMAT,
        "what": "person",
        "id": person_id,
        "faces": by_media,
        "embedding_digests": sorted(embedding_digests),
        "cache_digests": sorted(cache_digests),
    }


def forget_person(
    person_id: str,
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
) -> Forgotten:
    """Delete one person's faces everywhere and keep them out of future clustering, then re-cluster;
    resumes an interrupted forget of that person from its journal (the dossiers may no longer know it)."""
    path = journal_path(store, "person", person_id)
    out = Forgotten("person", person_id)
    journal = _read_journal(path)
    if journal is not None:
        out.notes.append(RESUMED_NOTE)
    else:
        journal = _person_journal(store, person_id)
        _write_journal(path, journal)
    _fault_point("person.journal")
    _forget_person_steps(person_id, journal, instance, store, qdrant, cache, refresh_people, out)
    _drop_journal(path)
    return out


def _forget_person_steps(
    person_id: str,
    journal: dict[str, Any],
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
    out: Forgotten,
) -> None:
    by_media: dict[str, list[str]] = journal["faces"]
    face_ids = tuple(sorted(f for ids in by_media.values() for f in ids))
    # the decision keeps the faces out of every clustering from now on, before anything goes
    logged = any(
        isinstance(d, persons.ForgetPerson) and d.person_id == person_id and set(face_ids) <= set(d.face_ids)
        for d in load_decisions(store)
    )
    if face_ids and not logged:
        append_decision(store, persons.ForgetPerson(person_id, face_ids))
    _fault_point("person.decision")

    names = drop_names(store, person_id)
    if names:
        out.notes.append(f"{names} name decision(s) removed from the log")
    _fault_point("person.names")

    remember_forgotten_digests(store, set(journal["embedding_digests"]))  # they keep re-uploads out
    _fault_point("person.digests")

    for key, ids in sorted(by_media.items()):
        out.face_rows += drop_face_rows(store, key, set(ids))
    _fault_point("person.faces")

    for key, ids in sorted(by_media.items()):
        out.vectors += qdrant.delete_where("faces", {"partition": key}, "face_id", sorted(ids))
    _fault_point("person.vectors")

    out.cache_entries += _forget_cached(cache, list(journal["cache_digests"]), "faces", out)
    _fault_point("person.cache")

    dossier_runs = {
        r.event_log_entry.run_id
        for r in instance.fetch_materializations(AssetKey(DOSSIERS), limit=10_000).records
        if r.event_log_entry.run_id
    }
    for run_id in sorted(dossier_runs):
        if instance.has_run(run_id):
            instance.delete_run(run_id)
            out.runs_deleted += 1
    _fault_point("person.runs")

    _refresh_dossiers(refresh_people, store, set(face_ids), f"person {person_id}")
    manifest = store.read_manifest(DOSSIERS, "library")
    if manifest and person_id in store.read_table(manifest["tables"]["persons"]).column("person_id").to_pylist():
        raise RuntimeError(f"forget person {person_id}: the re-clustered dossiers still list it; run it again")
    _fault_point("person.dossiers")


def drop_face_rows(store: MediaStore, key: str, face_ids: set[str]) -> int:
    """Rewrite one media's faces table without those faces (their crops go with the rows)."""
    manifest = store.read_manifest("faces", key)
    if not manifest or not manifest.get("table") or not Path(manifest["table"]).exists():
        return 0
    table = store.read_table(manifest["table"])
    ids = [f"{key}/{kf}/{face}" for kf, face in zip(table["kf"].to_pylist(), table["face"].to_pylist(), strict=True)]
    keep = pc.invert(pc.is_in(pa.array(ids, type=pa.string()), value_set=pa.array(sorted(face_ids), type=pa.string())))
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
                "forgotten_faces": manifest.get("forgotten_faces", 0) + dropped,
            },
        )
    return dropped


# -- finishing what was interrupted ---------------------------------------------------------------
def resume_unfinished(
    instance: DagsterInstance,
    store: MediaStore,
    qdrant: QdrantResource,
    cache: InferenceCache,
    refresh_people: Callable[[], Any],
) -> list[Forgotten]:
    """Finish every interrupted forget. Call it before analysing: an unfinished media forget would
    otherwise let the same file be added again beside the leftovers of its old self, and a later
    resume would delete the new analysis."""
    _sweep_journal_temps(store)
    done: list[Forgotten] = []
    for what, ident in pending_forgets(store):
        run = forget_media if what == "media" else forget_person
        done.append(run(ident, instance, store, qdrant, cache, refresh_people))
    return done


__all__ = [
    "JOURNAL_DIR",
    "MEDIA_STEPS",
    "PERSON_STEPS",
    "RESUMED_NOTE",
    "Forgotten",
    "NothingToForget",
    "drop_face_rows",
    "forget_media",
    "forget_person",
    "journal_path",
    "pending_forgets",
    "resume_unfinished",
]
