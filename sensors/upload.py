"""`media_upload_sensor`: files dropped into the inbox become partitions and runs, with no click.

The new files of a tick share runs (a partition range of at most MAX_PARTITIONS_PER_RUN files):
each model loads once for all of them instead of once per file. A file that fails in such a run
is taken out by `failed_batch_sensor`, which runs the others on.

Crash safety. A tick moves each new file out of the inbox into `store/incoming/<key><ext>` (its
source record written first) and only then returns the partitions and runs for the daemon to apply.
Any process may be killed in between: the tick itself, the daemon before it added the partitions,
or after that but before it created the runs (a tick whose run requests were already stored is
resumed by the daemon itself). And the UI's "Test sensor" runs the tick without applying anything.
So every tick first recovers what such a tick left: taken files with no partition get one and a
run; taken files whose partition exists but that never got a run (none created since the file was
taken, no `media_file` materialisation) get a run. Run keys are derived from the partitions, so a
request the daemon already honoured is skipped by its run-key check. A file whose run failed is
left to `failed_batch_sensor` and the user: it has a run.

The inbox is a local folder or an S3 prefix (MEDIALENS_INBOX=s3://bucket/prefix): the intake below
goes through `sensors.inbox.InboxSource` for both. An S3 object is downloaded into the store's
scratch folder to be checked; a new one's record (naming the object and its ETag) is written, the
download renamed into incoming/, and only then the object deleted. A tick killed before that delete
leaves the object listed: the next tick recognises it from the record of its taken file and finishes
the delete instead of taking it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.event_api import AssetRecordsFilter
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from media_assets.analysis.inspect import Limits
from media_assets.assets.jobs import ANALYSE_JOB_NAME
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.partitions import (
    MEDIA_PARTITIONS_NAME,
    is_valid_key,
    key_for_existing_content,
    media_partitions,
    partitions_run_request,
    range_chunks,
)
from media_assets.plumbing.per_media import MAX_PARTITIONS_PER_RUN
from media_assets.plumbing.registration import admit, register, registered_ts, stored_suffix, taken_source
from media_assets.service.forget import journal_path
from resources.inbox import InboxResource
from resources.store import MediaStore
from sensors.failed_batch import range_members
from sensors.inbox import (
    DUPLICATES_DIR,
    REJECTED_DIR,
    Candidate,
    FileChanged,
    InboxSource,
    LocalInbox,
    split_stable,
    taken_files,
)

MEDIA_FILE = AssetKey("media_file")
RECOVERED_TAG = "medialens/recovered"
# Run and event timestamps come from the storage's clock, a registration from the code server's;
# a run created this long before a file was taken still counts as its run.
CLOCK_SLACK_S = 300.0
# A run left NOT_STARTED this long was created by a daemon that died before submitting it and whose
# tick was not resumed (the daemon resumes interrupted ticks for 24 h before evaluating anew).
ABANDONED_AFTER_S = 3600.0


@dataclass
class Budget:
    """What is left of a tick's caps. A file larger than the byte cap is taken only as the tick's
    first, so it is not starved by the cap it exceeds."""

    files: int
    bytes: int
    first: bool = True

    def allows(self, size: int) -> bool:
        return self.files > 0 and (size <= self.bytes or self.first)

    def spend(self, size: int = 0) -> None:
        self.files -= 1
        self.bytes -= size
        self.first = False


@dataclass
class Recovered:
    """What earlier, interrupted ticks left behind, to be finished by this one."""

    new: list[tuple[str, str]] = field(default_factory=list)  # (key, source name): no partition yet
    runs: list[RunRequest] = field(default_factory=list)  # partitions that exist but never got a run
    settled: set[str] = field(default_factory=set)  # taken files known to have their run
    taken: set[str] = field(default_factory=set)  # every key in incoming/, recovered or not
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # the source records read (key -> record)
    names: list[str] = field(default_factory=list)  # "<key> (<file name>): what it lacked", for the log


@sensor(
    job_name=ANALYSE_JOB_NAME,
    # The daemon evaluates sensors in a loop of 5 s and measures an interval from the start of the last
    # tick, a moment after its loop began: 5 here skipped every other loop (ticks 10 s apart), 4
    # ticks on every loop (bench/realtime.py's inbox path).
    minimum_interval_seconds=4,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each stable new file in the inbox as a `media` partition and runs the "
    f"analysis for the tick's new files together (runs of at most {MAX_PARTITIONS_PER_RUN}); refused "
    "files go to inbox/rejected/ with a .reason.txt. Recovers files an interrupted tick had taken. "
    "The inbox is a folder or an S3 prefix (MEDIALENS_INBOX=s3://bucket/prefix).",
)
def media_upload_sensor(context: SensorEvaluationContext, inbox: InboxResource, store: MediaStore) -> SensorResult:
    source = open_inbox(inbox, store)
    source.prepare()
    # pending: inbox files seen but not taken yet (signature, since when); settled: taken files whose
    # run was seen, not looked up again while they wait in incoming/.
    state = json.loads(context.cursor) if context.cursor else {}
    order = list(context.instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    budget = Budget(inbox.max_files_per_tick, inbox.max_mb_per_tick * 2**20)

    recovered = recover(context, store, source, order, budget, set(state.get("settled", [])))
    if recovered.names:
        context.log.warning(
            f"recovered {len(recovered.names)} files a previous tick had taken: {', '.join(recovered.names)}"
        )

    now_ms = int(time.time() * 1000)
    previous: dict[str, list[int | str]] = state.get("pending", {})
    stable: list[Candidate]
    try:
        listed = source.candidates(recovered.records)
    except OSError as exc:  # e.g. the S3 endpoint is unreachable: what was pending stays pending
        context.log.warning(f"cannot list the inbox {source.where}: {exc}; looked at again on a next tick")
        stable, pending = [], dict(previous)
    else:
        quiet_before = (
            source.clock_ns - int(inbox.quiet_seconds * 1e9) if source.clock_ns and inbox.quiet_seconds > 0 else None
        )
        stable, pending = split_stable(listed, previous, now_ms, int(inbox.settle_seconds * 1000), quiet_before)
    if source.finished:
        context.log.warning(
            f"finished taking {len(source.finished)} files an interrupted tick had taken: {', '.join(source.finished)}"
        )
    limits = Limits.from_params(current_settings().of("media_file"))
    # Taken files not recovered yet (over this tick's cap) already own their content.
    known = set(order) | recovered.taken
    new: list[tuple[str, str]] = []  # (key, the user's file name), in the order they are added
    for c in stable:
        if not budget.allows(c.size):
            pending[c.rel] = c.cursor_entry()  # stable already: taken on a next tick
            continue
        budget.spend(c.size)
        try:
            taken = intake(context, c, source, store, limits, known, pending, now_ms)
        except OSError as exc:  # one odd file (gone, unreadable, disk full) must not fail the tick
            context.log.warning(f"{c.rel}: {exc}; looked at again on a next tick")
            pending.pop(c.rel, None)
            continue
        if taken is not None:
            known.add(taken[0])
            new.append(taken)

    for warning in source.warnings:
        context.log.warning(warning)
    cursor = json.dumps({"pending": pending, "settled": sorted(recovered.settled)}, sort_keys=True)
    added = recovered.new + new
    runs = batch_runs(added) + recovered.runs
    if not runs:
        waiting = f"; {len(pending)} file(s) waiting to be stable" if pending else ""
        return SensorResult(skip_reason=f"no new media{waiting}", cursor=cursor)
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[media_partitions.build_add_request([key for key, _ in added])] if added else [],
        cursor=cursor,
    )


def open_inbox(inbox: InboxResource, store: MediaStore) -> InboxSource:
    """The inbox the resource names: a local folder, or an S3 prefix (boto3 only imported then)."""
    if inbox.is_s3:
        from sensors.s3_inbox import S3Inbox

        return S3Inbox.from_resource(inbox, store)
    return LocalInbox(inbox.root)


def intake(
    context: SensorEvaluationContext,
    c: Candidate,
    source: InboxSource,
    store: MediaStore,
    limits: Limits,
    known: set[str],
    pending: dict[str, list[int | str]],
    now_ms: int,
) -> tuple[str, str] | None:
    """Check one stable file and take it: (key, name) when it is new media, else None (set aside,
    or left in the inbox because it changed meanwhile)."""
    problem = source.problem(c)
    if problem:
        source.set_aside(c, REJECTED_DIR, problem)
        context.log.warning(f"rejected {c.rel}: {problem}")
        return None
    try:
        with source.fetch(c) as fetched:
            return _admit_and_take(context, c, fetched, source, store, limits, known, pending, now_ms)
    except FileChanged as exc:  # the file is back in (or still in) the inbox, looked at anew
        pending.pop(c.rel, None)
        context.log.info(f"{c.rel}: {exc}; looked at again")
        return None


def _admit_and_take(
    context: SensorEvaluationContext,
    c: Candidate,
    fetched: Path,
    source: InboxSource,
    store: MediaStore,
    limits: Limits,
    known: set[str],
    pending: dict[str, list[int | str]],
    now_ms: int,
) -> tuple[str, str] | None:
    a = admit(fetched, limits, known, source_name=c.name)
    after = source.look_again(c)
    if after != c.signature:  # written to, replaced or removed while it was being checked
        if after is not None:
            pending[c.rel] = [*after, now_ms]
        context.log.info(f"{c.rel}: changed while it was checked; looked at again")
        return None
    dropped_as = f" (dropped as {c.rel})" if c.rel != c.name else ""
    if a.status == "rejected":
        source.set_aside(c, REJECTED_DIR, f"{a.reason or 'rejected'}{dropped_as}")
        context.log.warning(f"rejected {c.rel}: {a.reason}")
        return None
    if a.status == "duplicate":
        source.set_aside(c, DUPLICATES_DIR, f"{a.reason} (not analysed again){dropped_as}")
        context.log.info(f"{c.rel}: {a.reason}; moved to {DUPLICATES_DIR}/")
        return None
    assert a.key is not None and a.info is not None and a.sha256 is not None
    taken = store.incoming_dir / f"{a.key}{stored_suffix(a.source_name, a.info.container)}"
    register(store, a, taken, move=True)  # first: a file in incoming/ always has its record
    extra = source.record_extra(c)
    if extra:  # e.g. the S3 object it came from, for finishing an interrupted take
        store.write_source(a.key, {**store.read_source(a.key), **extra})
    try:
        source.take(c, fetched, taken, a.sha256)
    except FileChanged:
        store.source_path(a.key).unlink(missing_ok=True)
        raise
    context.log.info(f"{c.rel}: new media {a.key} ({a.info.kind}, {a.info.size_bytes / 2**20:.1f} MB)")
    return a.key, a.source_name


def recover(
    context: SensorEvaluationContext,
    store: MediaStore,
    source: InboxSource,
    order: Sequence[str],
    budget: Budget,
    settled: set[str],
) -> Recovered:
    """Finish what interrupted ticks left in incoming/ (at most the budget's files), oldest first.

    `settled`: taken files already seen to have a run (the cursor's memory), not looked up again;
    a file stays in incoming/ for good when its `media_file` failed."""
    out = Recovered()
    partitions = set(order)
    known = set(partitions)
    waiting: dict[str, dict[str, Any]] = {}  # partition exists: does it have a run?
    for key, path in taken_files(store.incoming_dir):
        if is_valid_key(key) and journal_path(store, "media", key).exists():
            # `medialens forget` is deleting it (partition first, the file later) or was
            # interrupted and resumes: recovering it would bring the media back.
            continue
        out.taken.add(key)
        if key in partitions and key in settled:
            out.settled.add(key)
            continue
        record = taken_source(store, key, path)
        if record is None:
            if key not in partitions:
                _set_aside_quietly(context, path, source, REJECTED_DIR, _NO_RECORD)
            continue
        out.records[key] = record  # with a partition, its run (or media_file) says what is wrong
        if key in partitions:
            waiting[key] = record
            continue
        if not budget.allows(0):
            continue
        other = key_for_existing_content(str(record["sha256"]), known)
        if other is not None:  # two interrupted ticks took the same bytes under two names
            if _set_aside_quietly(context, path, source, DUPLICATES_DIR, f"same bytes as {other} (not analysed again)"):
                store.source_path(key).unlink(missing_ok=True)
            continue
        budget.spend()
        known.add(key)
        out.new.append((key, str(record.get("source_name") or path.name)))
        out.names.append(f"{key} ({out.new[-1][1]}): no partition")
    if waiting:
        has_run, finished = covered(context.instance, order, waiting)
        out.settled |= finished
        lacking = [k for k in order if k in waiting and k not in has_run][: max(budget.files, 0)]
        for _ in lacking:
            budget.spend()
        names = {k: str(waiting[k].get("source_name") or k) for k in lacking}
        out.names += [f"{k} ({names[k]}): no run" for k in lacking]
        for _, _, chunk in range_chunks(lacking, order, MAX_PARTITIONS_PER_RUN):
            out.runs.append(run_for([(k, names[k]) for k in chunk], {RECOVERED_TAG: "true"}))
    return out


_NO_RECORD = (
    "found among the files the upload sensor had taken, without the record of where it came from "
    "(left by an older version, or its media was forgotten); not analysed: drop it into the inbox "
    "again to have it analysed"
)


def _set_aside_quietly(
    context: SensorEvaluationContext, path: Path, source: InboxSource, folder: str, reason: str
) -> bool:
    try:
        source.set_aside_taken(path, folder, reason)
    except OSError as exc:  # e.g. taken into the store by media_file meanwhile
        context.log.info(f"{path.name}: not set aside ({exc})")
        return False
    context.log.warning(f"{path.name}, taken by an earlier tick, moved to {folder}/: {reason}")
    return True


def covered(
    instance: DagsterInstance, order: Sequence[str], waiting: Mapping[str, Mapping[str, Any]]
) -> tuple[set[str], set[str]]:
    """Of the `waiting` partitions (key -> source record): those that have a run or a `media_file`
    materialisation since their file was taken, and of those the ones that will not need a look
    again (a run that is not merely created: that one may be abandoned).

    Only runs and events since the oldest file was taken are read (a partition key can come back:
    the same name and bytes dropped again after `medialens forget`)."""
    taken_at = {k: registered_ts(dict(r)) - CLOCK_SLACK_S for k, r in waiting.items()}
    since = min(taken_at.values())
    has_run: set[str] = set()
    settled: set[str] = set()
    cursor = None
    while True:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=MEDIA_FILE, asset_partitions=list(waiting), after_timestamp=since),
            limit=500,
            cursor=cursor,
        )
        for event in page.records:
            k = event.partition_key
            if k in taken_at and event.timestamp >= taken_at[k]:
                has_run.add(k)
                settled.add(k)
        if not page.has_more:
            break
        cursor = page.cursor
    now = time.time()
    for record in instance.get_run_records(RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
        created = record.create_timestamp.timestamp()
        run = record.dagster_run
        merely_created = run.status == DagsterRunStatus.NOT_STARTED
        if merely_created and now - created > ABANDONED_AFTER_S:
            continue
        for k in run_partitions(run.tags, order):
            if k in taken_at and created >= taken_at[k]:
                has_run.add(k)
                if not merely_created:
                    settled.add(k)
    return has_run, settled


def run_partitions(tags: Mapping[str, str], order: Sequence[str]) -> list[str]:
    """The media partitions a run covers, from its partition tag or its range tags."""
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return range_members(order, first, last) if first and last else []


def run_for(chunk: Sequence[tuple[str, str]], extra_tags: Mapping[str, str] | None = None) -> RunRequest:
    """One run over `chunk` (partitions contiguous in add order, with their file names). The run key
    names the partitions, so requesting the same run again is a no-op for the daemon."""
    extra = dict(extra_tags or {})
    if len(chunk) == 1:
        key, name = chunk[0]
        return RunRequest(partition_key=key, run_key=key, tags={"medialens/source": name, **extra})
    first, last = chunk[0][0], chunk[-1][0]
    names = ", ".join(name for _, name in chunk)
    tags = {
        "medialens/files": str(len(chunk)),
        "medialens/sources": names if len(names) <= 200 else names[:197] + "...",
        **extra,
    }
    return partitions_run_request(first, last, run_key=f"{first}..{last}", tags=tags)


def batch_runs(new: Iterable[tuple[str, str]], limit: int | None = None) -> list[RunRequest]:
    """Runs over the new partitions, `limit` at a time. They are added in this order in one request,
    so neighbours form a range; a lone file gets a plain single-partition run."""
    limit = limit or MAX_PARTITIONS_PER_RUN
    items = list(new)
    return [run_for(items[start : start + limit]) for start in range(0, len(items), limit)]
