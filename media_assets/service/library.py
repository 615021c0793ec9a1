"""The library: every media partition with its kind, length, status and staleness; and uploads.

`library(store, instance)` is the results UI's Library page (and any CLI listing): one row per
registered media partition, built from what the store and the Dagster instance already know. The
instance is asked a fixed number of things whatever the library's size (per media asset: Dagster's
partition status, which keeps its own cache up to date as the Dagster UI does, and the two chunked
queries of `find_stale`), the store two small JSON files per media (the `media_file` manifest and
the source record); only a failed media costs a query more, for its reason (at most MAX_REASONS).
About 1.5 s for 3,000 media on a busy 2-core machine.

`upload(paths, name, data)` puts one file into the inbox for the upload sensor (sensors/upload.py)
to take. The sensor never looks at dotfiles or `*.part` names, so the bytes are written under such
a name, fsynced, checked the way the sensor checks them (type from the bytes, limits from the
headers), and only then given their real name, by a hard link that cannot replace another file:
the sensor sees the whole file or nothing, and a file already in the inbox is never overwritten.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from media_assets.analysis.inspect import Limits, MediaRejected, inspect_media, sniff
from media_assets.plumbing.config import Paths, current_settings
from media_assets.plumbing.registration import registered_ts
from sensors.inbox import PARTIAL_SUFFIXES, RESERVED_DIRS, is_ignored_name

if TYPE_CHECKING:  # Dagster is imported when the library is listed, not when an upload is checked
    from dagster import AssetKey, DagsterInstance, Definitions

    from resources.store import MediaStore

ANALYSED = "analysed"
REGISTERED = "registered-not-ingested"
FAILED = "failed"
ANALYSING = "analysing"
STATUSES = (ANALYSED, ANALYSING, REGISTERED, FAILED)
KINDS = ("video", "audio", "image")
# Failure reasons are read from the failed runs' events, one query per failed media: bounded so a
# library where thousands failed still lists quickly (the rest say where to look).
MAX_REASONS = 100

# What `media_assets.analysis.inspect.sniff` recognises from the bytes (the file name's extension
# does not matter), in words for people choosing files.
ACCEPTED_TYPES = (
    "video (mp4, mov, m4v, mkv, webm, avi, flv, wmv, mpeg, ts), "
    "audio (mp3, m4a, aac, wav, flac, ogg, opus, amr) and "
    "images (jpeg, png, gif, bmp, tiff, webp, heic, avif)"
)


# -- listing -----------------------------------------------------------------------------------------
def library(store: MediaStore, instance: DagsterInstance, defs: Definitions | None = None) -> list[dict[str, Any]]:
    """One row per registered media partition, newest first (see `Row` for the keys).

    `defs`: the code location whose asset versions staleness is measured against; by default the
    one this process loaded (`media_assets.definitions`), so a changed setting shows once the
    process that lists starts again, as with `medialens stale`.
    """
    from media_assets.plumbing.staleness import find_stale
    from media_assets.service.stats import media_facts, media_keys

    if defs is None:
        from media_assets.definitions import defs as loaded

        defs = loaded
    keys = media_keys(instance, store)
    facts = media_facts(store, keys)
    stale: dict[str, set[str]] = {}
    missing: dict[str, set[str]] = {}
    for s in find_stale(instance, defs):
        (missing if s.recorded_version is None else stale).setdefault(s.partition, set()).add(s.asset)
    status = _asset_status(instance, defs, keys)
    order = _asset_order(defs)
    sources = {key: _source(store, key) for key in keys}
    ingested = _ingested_ts(instance) if any(sources[k] is None for k in keys) else {}
    rows: list[dict[str, Any]] = []
    reasons_left = MAX_REASONS
    for key in keys:
        fact, source = facts.get(key), sources[key]
        failed = [a for a in order if status.get(a, {}).get(key) == "failed"]
        running = any(status.get(a, {}).get(key) == "in_progress" for a in order)
        reason = None
        if failed and not running and reasons_left > 0:
            reasons_left -= 1
            reason = _failure_reason(instance, failed[0], key)
        added = registered_ts(source) if source else ingested.get(key)
        kind = fact["kind"] if fact else None
        rows.append(
            Row(
                key=key,
                source_name=_source_name(store, key, source),
                kind=kind,
                duration_s=fact["duration_s"] if fact and kind != "image" else None,
                size_bytes=fact["size_bytes"] if fact else (source or {}).get("size_bytes"),
                status=ANALYSING if running else FAILED if failed else ANALYSED if fact else REGISTERED,
                failed_assets=failed,
                reason=reason,
                stale_assets=[a for a in order if a in stale.get(key, set())],
                missing_assets=[a for a in order if a in missing.get(key, set())],
                added_ts=added or None,
            ).as_dict()
        )
    rows.sort(key=lambda r: (-(r["added_ts"] or 0.0), r["key"]))
    return rows


@dataclass(frozen=True)
class Row:
    """One media of the library.

    status: `analysed` (taken into the store, nothing failing), `analysing` (a run is at it now),
    `registered-not-ingested` (a partition whose file is not in the store yet: its run is waiting
    or was never made) or `failed` (the latest attempt of `failed_assets` failed; `reason` is the
    first one's, as the run reported it). `stale_assets`: analysed with another version of the
    asset, or after an input that is (`medialens stale`); `missing_assets`: never materialised.
    `added_ts`: when the file was registered (epoch seconds; `added` the same in ISO, UTC).
    """

    key: str
    source_name: str | None
    kind: str | None
    duration_s: float | None
    size_bytes: int | None
    status: str
    failed_assets: list[str]
    reason: str | None
    stale_assets: list[str]
    missing_assets: list[str]
    added_ts: float | None

    def as_dict(self) -> dict[str, Any]:
        added = datetime.fromtimestamp(self.added_ts, UTC).isoformat(timespec="seconds") if self.added_ts else None
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "added": added}  # asdict: 5x slower


def totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What the top of the Library says: media, hours, and counts by status and kind, and stale."""
    out: dict[str, Any] = {"media": 0, "hours": 0.0, "stale": 0}
    by_status = dict.fromkeys(STATUSES, 0)
    by_kind = dict.fromkeys(KINDS, 0)
    for r in rows:
        out["media"] += 1
        out["hours"] += (r.get("duration_s") or 0.0) / 3600
        out["stale"] += bool(r.get("stale_assets"))
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        if r.get("kind"):
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    out["hours"] = round(out["hours"], 2)
    return {**out, "by_status": by_status, "by_kind": by_kind}


def _media_asset_keys(defs: Any) -> list[AssetKey]:
    from media_assets.plumbing.staleness import media_asset_keys

    return media_asset_keys(defs.resolve_asset_graph())


def _asset_order(defs: Any) -> list[str]:
    return [k.to_user_string() for k in _media_asset_keys(defs)]


def _asset_status(instance: DagsterInstance, defs: Any, keys: list[str]) -> dict[str, dict[str, str]]:
    """Asset -> partition -> "failed" / "in_progress" / "materialized", from Dagster's partition
    status (its cached per-asset subsets: one read per asset, whatever the number of media)."""
    graph = defs.resolve_asset_graph()
    out: dict[str, dict[str, str]] = {}
    for key in _media_asset_keys(defs):
        found = instance.get_status_by_partition(key, keys, graph.get(key).partitions_def) or {}
        out[key.to_user_string()] = {p: s.value.lower() for p, s in found.items() if s is not None}
    return out


def _failure_reason(instance: DagsterInstance, asset: str, key: str) -> str | None:
    """Why the latest attempt of `asset` for `key` failed: the partition's own reason when the run's
    step named it (`failed_partitions`), else the step's first failure."""
    from dagster import AssetKey, DagsterEventType

    from media_assets.plumbing.per_media import failed_partitions

    planned = instance.get_latest_planned_materialization_info(AssetKey.from_user_string(asset), key)
    if planned is None:
        return None
    events = [
        e.dagster_event
        for e in instance.all_logs(planned.run_id, of_type=DagsterEventType.STEP_FAILURE)
        if e.dagster_event is not None
    ]
    named = failed_partitions(events)
    if key in named:
        return named[key]
    for event in events:
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"{event.step_key}: {data.user_failure_data.description}"
        if data.error is not None:
            return f"{event.step_key}: {data.error.message.strip()}"
    return f"{asset}: failed in run {planned.run_id}"


def _source(store: MediaStore, key: str) -> dict[str, Any] | None:
    if not store.source_path(key).exists():
        return None
    try:
        return store.read_source(key)
    except (OSError, ValueError):
        return None


def _source_name(store: MediaStore, key: str, source: dict[str, Any] | None) -> str | None:
    if source and source.get("source_name"):
        return str(source["source_name"])
    media = store.read_manifest("media_file", key) or {}  # registered by an older version: no record
    name = media.get("source_name")
    return str(name) if name else None


def _ingested_ts(instance: DagsterInstance) -> dict[str, float]:
    """Partition -> when its file was last taken into the store, for media with no source record."""
    from dagster import AssetKey

    from media_assets.plumbing.staleness import latest_records

    return {p: float(r.timestamp) for p, r in latest_records(instance, AssetKey("media_file")).items()}


# -- upload ------------------------------------------------------------------------------------------
class UploadRefused(ValueError):
    """A file that was not put into the inbox; the message names it and says why."""


class Readable(Protocol):
    """What an upload's bytes may come as besides `bytes`: an open file, Streamlit's UploadedFile."""

    def read(self, size: int = -1, /) -> bytes: ...


_TEMP_PREFIX = ".upload-"
_TEMP_MAX_AGE_S = 24 * 3600
_MAX_NAME_BYTES = 200  # NAME_MAX is 255; room for " (N)" and the sensor's own renames
_CHUNK = 1 << 20


def check_name(name: str) -> str:
    """`name` if the inbox can hold a file of that name that the sensor will take, else UploadRefused."""
    if not name or not name.strip():
        raise UploadRefused("the file has no name")
    if "/" in name or "\\" in name or "\0" in name:
        raise UploadRefused(f"{name!r}: a file name must not contain path separators (/ or \\)")
    if name.startswith("."):
        raise UploadRefused(f"{name!r}: names starting with a dot are hidden files, which the inbox ignores")
    if is_ignored_name(name):
        raise UploadRefused(
            f"{name!r}: the inbox ignores names ending in {', '.join(PARTIAL_SUFFIXES)} (files still being written)"
        )
    if name in RESERVED_DIRS:
        raise UploadRefused(f"{name!r}: that name is the inbox's own folder of set-aside files")
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
        raise UploadRefused(f"{name[:40]!r}...: the file name is too long (at most {_MAX_NAME_BYTES} bytes)")
    return name


def upload(paths: Paths, name: str, data: bytes | Readable, limits: Limits | None = None) -> Path:
    """Put one file into the inbox under `name` (or `name (2)`, ... when taken); its path there.

    Raises UploadRefused, leaving nothing behind, for a bad name, no bytes, an S3 inbox, or a file
    the sensor would refuse (its type is sniffed from the bytes; `limits`: the `media_file`
    settings' by default). OSError (e.g. a full disk) also leaves nothing behind.
    """
    check_name(name)
    inbox = paths.inbox
    if "s3:" in inbox.parts:  # Paths keeps MEDIALENS_INBOX=s3://bucket/prefix as a path
        raise UploadRefused(f"{name}: the inbox is an S3 prefix; put the file into the bucket with an S3 client")
    if isinstance(data, bytes | bytearray) and not data:
        raise UploadRefused(f"{name}: the file is empty (0 bytes)")
    limits = limits or Limits.from_params(current_settings().of("media_file"))
    inbox.mkdir(parents=True, exist_ok=True)
    _sweep_temp(inbox)
    tmp = inbox / f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.part"
    try:
        size = _write(tmp, data, limits, name)
        if size == 0:
            raise UploadRefused(f"{name}: the file is empty (0 bytes)")
        _check(tmp, name, limits)
        dest = _place(tmp, inbox, name)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(inbox)
    return dest


def _write(tmp: Path, data: bytes | Readable, limits: Limits, name: str) -> int:
    """Write `data` to `tmp` (created new) and fsync it; the bytes written. Stops at the size limit."""
    size, max_bytes = 0, int(limits.max_size_mb * 2**20)
    with open(tmp, "xb") as out:
        blocks: Iterable[bytes] = (
            [bytes(data)] if isinstance(data, bytes | bytearray) else iter(lambda: data.read(_CHUNK), b"")
        )
        for block in blocks:
            size += len(block)
            if size > max_bytes:
                raise UploadRefused(f"{name}: over the {limits.max_size_mb:g} MB limit (media_file.max_size_mb)")
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return size


def _check(tmp: Path, name: str, limits: Limits) -> None:
    """Refuse what the sensor would set aside into `rejected/`: an unknown type, unreadable media,
    or media over the limits."""
    try:
        sniff(tmp)
    except MediaRejected as exc:
        raise UploadRefused(f"{name}: {exc.reason}; the inbox takes {ACCEPTED_TYPES}") from exc
    try:
        inspect_media(tmp, limits)
    except MediaRejected as exc:  # a decoder's message may name the temporary file: name the user's
        raise UploadRefused(f"{name}: {exc.reason.replace(str(tmp), name)}") from exc


def numbered(name: str, n: int) -> str:
    """`name` with a counter before its extension: `talk (2).mp4`."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or only a leading dot, which check_name refuses)
        return f"{name} ({n})"
    return f"{stem} ({n}){dot}{ext}"


def _place(tmp: Path, inbox: Path, name: str) -> Path:
    """Give the finished file its name: a hard link fails rather than replace a file of that name,
    so the first free one of `name`, `name (2)`, ... is taken whole in one step."""
    n = 1
    while True:
        dest = inbox / (name if n == 1 else numbered(name, n))
        n += 1
        try:
            os.link(tmp, dest)
            return dest
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: rename, after looking (not atomic)
            if dest.exists() or dest.is_symlink():
                continue
            os.rename(tmp, dest)
            return dest


def _sweep_temp(inbox: Path) -> None:
    """Remove what uploads killed mid-write left (a day old: a slow upload's file is younger)."""
    now = time.time()
    try:
        entries = list(os.scandir(inbox))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(".part"):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > _TEMP_MAX_AGE_S:
                    os.unlink(entry.path)
            except OSError:
                continue


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stale_of(instance: DagsterInstance, key: str, defs: Definitions | None = None) -> dict[str, str]:
    """asset -> why it is stale (or never made) for one media: the media page's version list."""
    from media_assets.plumbing.staleness import find_stale

    if defs is None:
        from media_assets.definitions import defs as loaded

        defs = loaded
    return {s.asset: s.reason for s in find_stale(instance, defs, partitions=[key])}
