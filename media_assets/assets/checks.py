"""Asset checks: cheap, non-blocking looks at what an analysis left, per media partition.

Dagster 1.13 can partition an asset check (`@asset_check(partitions_def=...)`), but an evaluation
only carries a partition when its step runs for a single partition key, and a step may emit one
result per check. Our runs cover partition ranges (a batch of uploads, a backfill chunk), so each
check here is unpartitioned and examines the partitions of its asset that the same run materialised
(all materialised partitions when the check runs on its own, e.g. from the UI). It passes when all
are fine; otherwise its description names every failing partition with the numbers, and its
metadata holds them as JSON.

None is blocking and none raises: a check that cannot look (say the Qdrant folder is locked) fails
with severity WARN and says why, so a check never fails or holds up an analysis run.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow.parquet as pq
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    MetadataValue,
    asset_check,
)

from resources.qdrant import QdrantResource
from resources.store import MediaStore

# "Audible": an audio track at least this long and this loud (RMS over the whole track) holds sound
# a listener hears; the samples' espeak speech is about -20 dBFS, room tone and hiss below -50.
AUDIBLE_MIN_S = 3.0
AUDIBLE_MIN_RMS_DBFS = -40.0
# At most this many failing partitions are named in the description (all are in the metadata).
NAMED_IN_DESCRIPTION = 20

Problems = dict[str, str]


def partitions_to_check(context: AssetCheckExecutionContext, asset: str) -> list[str]:
    """The partitions of `asset` this run materialised, in order; when it materialised none (the
    check was run on its own), every partition that has a materialisation."""
    key = AssetKey(asset)
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    seen: dict[str, None] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.asset_key == key and event.partition:
            seen[event.partition] = None
    if seen:
        return list(seen)
    return sorted(context.instance.get_materialized_partitions(key))


def _result(what: str, checked: Sequence[str], problems: Problems, severity: AssetCheckSeverity) -> AssetCheckResult:
    if not problems:
        return AssetCheckResult(
            passed=True,
            description=f"{what}: all {len(checked)} partition(s) fine",
            metadata={"partitions_checked": len(checked), "partitions_failed": 0},
        )
    named = list(problems.items())[:NAMED_IN_DESCRIPTION]
    more = len(problems) - len(named)
    description = (
        f"{len(problems)} of {len(checked)} partition(s) failed ({what}): "
        + "; ".join(f"{k}: {v}" for k, v in named)
        + (f"; and {more} more (see metadata 'failed')" if more else "")
    )
    return AssetCheckResult(
        passed=False,
        severity=severity,
        description=description,
        metadata={
            "partitions_checked": len(checked),
            "partitions_failed": len(problems),
            "failed": MetadataValue.json(problems),
        },
    )


def _evaluate(
    context: AssetCheckExecutionContext,
    asset: str,
    what: str,
    severity: AssetCheckSeverity,
    examine: Callable[[list[str]], Problems],
) -> AssetCheckResult:
    """Run `examine` over the partitions to check; an error in the check itself is a WARN, never
    a failed step (these checks must not fail a run)."""
    try:
        keys = partitions_to_check(context, asset)
        return _result(what, keys, examine(keys), severity)
    except Exception as exc:  # a check that cannot look says so; it never fails the run
        context.log.warning(f"check of {asset} could not be evaluated: {exc}")
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"{what}: could not be evaluated: {type(exc).__name__}: {exc}",
        )


def _rows(path: str | None) -> int | None:
    """A Parquet table's row count from its footer (None when the file is missing)."""
    if not path:
        return None
    try:
        return int(pq.read_metadata(path).num_rows)
    except FileNotFoundError:
        return None


# -- keyframes -------------------------------------------------------------------------------------
def keyframe_problems(store: MediaStore, keys: list[str]) -> Problems:
    """A video whose keyframe index is empty or missing: every visual analysis of it is empty too."""
    out: Problems = {}
    for key in keys:
        m = store.read_manifest("keyframes", key)
        if m is None:
            out[key] = "materialised, but the store has no keyframes manifest"
            continue
        if m.get("kind") != "video":
            continue
        rows = _rows(m.get("table"))
        media = store.read_manifest("media_file", key) or {}
        duration = media.get("duration_s") or 0.0
        name = m.get("source_name") or media.get("source_name") or key
        if rows is None:
            out[key] = f"video {name!r} ({duration:.1f} s): keyframe index {m.get('table')} is missing"
        elif rows == 0:
            out[key] = f"video {name!r} ({duration:.1f} s): 0 keyframes (the manifest says {m.get('count')})"
        elif rows != m.get("count"):
            out[key] = f"video {name!r}: keyframe index has {rows} rows, the manifest says {m.get('count')}"
    return out


@asset_check(
    asset="keyframes",
    name="video_has_keyframes",
    blocking=False,
    description="Every video has keyframes (an empty index leaves OCR, poses, faces, safety and tags "
    "with nothing to look at); the index's rows match the manifest's count.",
)
def video_has_keyframes(context: AssetCheckExecutionContext, store: MediaStore) -> AssetCheckResult:
    return _evaluate(
        context,
        "keyframes",
        "videos have keyframes",
        AssetCheckSeverity.ERROR,
        lambda keys: keyframe_problems(store, keys),
    )


# -- transcript ------------------------------------------------------------------------------------
def transcript_problems(store: MediaStore, keys: list[str]) -> Problems:
    """Media with an audible audio track (>= AUDIBLE_MIN_S long, RMS >= AUDIBLE_MIN_RMS_DBFS) whose
    transcript has no words. Music alone fits this too, hence a warning, not an error."""
    out: Problems = {}
    for key in keys:
        audio = store.read_manifest("audio_track", key) or {}
        if not audio.get("path"):
            continue  # images and silent videos: nothing to transcribe
        duration = float(audio.get("duration_s") or 0.0)
        rms = audio.get("rms_dbfs")
        if duration < AUDIBLE_MIN_S or rms is None or rms < AUDIBLE_MIN_RMS_DBFS:
            continue
        m = store.read_manifest("transcript", key)
        table = (m or {}).get("table")
        if not table:
            out[key] = f"{duration:.1f} s of sound at {rms:.1f} dBFS RMS, but no transcript table"
            continue
        try:
            texts = pq.read_table(table, columns=["text"]).column("text").to_pylist()
        except FileNotFoundError:
            out[key] = f"{duration:.1f} s of sound at {rms:.1f} dBFS RMS, but transcript table {table} is missing"
            continue
        words = sum(len((t or "").split()) for t in texts)
        if words == 0:
            out[key] = (
                f"{duration:.1f} s of sound at {rms:.1f} dBFS RMS, but an empty transcript "
                f"({len(texts)} segments, 0 words)"
            )
    return out


@asset_check(
    asset="transcript",
    name="audible_speech_is_transcribed",
    blocking=False,
    description=f"Media whose audio track is audible (at least {AUDIBLE_MIN_S:.0f} s at "
    f"{AUDIBLE_MIN_RMS_DBFS:.0f} dBFS RMS or louder) have a transcript with words; a warning, since "
    "music without speech looks the same.",
)
def audible_speech_is_transcribed(context: AssetCheckExecutionContext, store: MediaStore) -> AssetCheckResult:
    return _evaluate(
        context,
        "transcript",
        "audible media have a transcript",
        AssetCheckSeverity.WARN,
        lambda keys: transcript_problems(store, keys),
    )


# -- search_index ----------------------------------------------------------------------------------
def index_problems(store: MediaStore, qdrant: QdrantResource, keys: list[str]) -> Problems:
    """Partitions whose points in Qdrant's `text` collection are not the ones the index wrote."""
    out: Problems = {}
    with qdrant.client():  # one embedded session (and folder lock) for all partitions
        for key in keys:
            m = store.read_manifest("search_index", key)
            if m is None:
                out[key] = "materialised, but the store has no search_index manifest"
                continue
            expected = int(m.get("points") or 0)
            actual = qdrant.count("text", partition=key, asset="search_index")
            if actual != expected:
                out[key] = (
                    f"{actual} points in Qdrant collection 'text', but the index wrote {expected} "
                    f"(by source: {m.get('by_source') or {}})"
                )
    return out


@asset_check(
    asset="search_index",
    name="vectors_match_index",
    blocking=False,
    description="Each partition's points in Qdrant's `text` collection are as many as the index wrote "
    "(fewer: search misses moments; more: stale points).",
)
def vectors_match_index(
    context: AssetCheckExecutionContext, store: MediaStore, qdrant: QdrantResource
) -> AssetCheckResult:
    return _evaluate(
        context,
        "search_index",
        "Qdrant text points match the index",
        AssetCheckSeverity.ERROR,
        lambda keys: index_problems(store, qdrant, keys),
    )


# -- faces -----------------------------------------------------------------------------------------
def _usable(embedding: Any) -> bool:
    return (
        embedding is not None
        and len(embedding) == 128
        and all(v is not None and math.isfinite(v) for v in embedding)
        and any(v != 0.0 for v in embedding)
    )


def face_problems(store: MediaStore, qdrant: QdrantResource, keys: list[str]) -> Problems:
    """Faces in a partition's table without a usable 128-d embedding, or without their vector in
    Qdrant's `faces` collection (person dossiers and face search would miss them)."""
    out: Problems = {}
    with qdrant.client():
        for key in keys:
            m = store.read_manifest("faces", key)
            if m is None:
                out[key] = "materialised, but the store has no faces manifest"
                continue
            table = m.get("table")
            try:
                embeddings = pq.read_table(table, columns=["embedding"]).column("embedding").to_pylist()
            except (FileNotFoundError, TypeError):
                out[key] = f"faces table {table} is missing"
                continue
            bad = sum(1 for e in embeddings if not _usable(e))
            vectors = qdrant.count("faces", partition=key, asset="faces")
            issues = []
            if bad:
                issues.append(f"{bad} of {len(embeddings)} faces have no usable embedding")
            if vectors != len(embeddings):
                issues.append(f"{len(embeddings)} faces in the table but {vectors} vectors in Qdrant 'faces'")
            if issues:
                out[key] = "; ".join(issues)
    return out


@asset_check(
    asset="faces",
    name="faces_have_embeddings",
    blocking=False,
    description="Every face has a finite, non-zero 128-d embedding and its vector in Qdrant's `faces` "
    "collection (one per table row).",
)
def faces_have_embeddings(
    context: AssetCheckExecutionContext, store: MediaStore, qdrant: QdrantResource
) -> AssetCheckResult:
    return _evaluate(
        context,
        "faces",
        "faces have embeddings",
        AssetCheckSeverity.ERROR,
        lambda keys: face_problems(store, qdrant, keys),
    )


MEDIA_CHECKS = [video_has_keyframes, audible_speech_is_transcribed, vectors_match_index, faces_have_embeddings]
