"""`failed_batch_sensor`: when a run over several media failed for some of them, the others go on.

A run over a range of partitions (the upload sensor's batch of new files, a chunk of the stale
sensor) fails a step as a whole when one file in it is bad: `per_media.for_each_partition` finishes
the other files first and names the bad ones in the step's `failed_partitions` metadata, but the
steps after it then run for none of them. This sensor reads those names from the failed run and
requests what the other files still lack, in ranges that leave the bad files out. The bad files
keep their failure, with its reason, in the original run (and in the UI's partition status).

A run whose worker died (SIGKILL, out of memory, a restart: run monitoring or the CLI marks it
failed) is first re-executed from its failure by Dagster's run retries (dagster.yaml `run_retries`,
crashes only); this sensor leaves such a run alone. A crash that Dagster no longer retries, or any
failure that names no partition, retries each file of the range alone, so that a bad file (one
that kills its worker every time) is found by its own run. Backfill runs are left to the backfill (its
"re-execute from failure"), and the CLI splits its own in-process runs (media_assets/service/headless.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    Definitions,
    RunFailureSensorContext,
    RunRequest,
    SkipReason,
    run_failure_sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    WILL_RETRY_TAG,
)

from media_assets.assets.jobs import analyse_media_job
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME, partitions_run_request, range_chunks
from media_assets.plumbing.per_media import MAX_PARTITIONS_PER_RUN, failed_partitions
from media_assets.plumbing.staleness import GraphOnly, missing_by_partition

SPLIT_FROM_TAG = "medialens/split_from"


def range_members(order: Sequence[str], first: str, last: str) -> list[str]:
    """The partitions a range run covered (empty if either end is gone, e.g. forgotten since)."""
    try:
        i, j = order.index(first), order.index(last)
    except ValueError:
        return []
    return list(order[i : j + 1])


def rerun_requests(
    run_id: str,
    members: Sequence[str],
    failed: dict[str, str],
    missing: dict[str, set[str]],
    order: Sequence[str],
    limit: int = MAX_PARTITIONS_PER_RUN,
) -> list[RunRequest]:
    """Runs for what `members` still lack once the `failed` ones are left out (each member alone
    when no partition was named), grouped by the assets they need, in contiguous ranges."""
    alone = not failed or not set(failed) <= set(members)
    rest = [m for m in members if (alone or m not in failed) and missing.get(m)]
    groups: dict[tuple[str, ...], list[str]] = {}
    for p in rest:
        groups.setdefault(tuple(sorted(missing[p])), []).append(p)
    runs: list[RunRequest] = []
    for selection, parts in sorted(groups.items()):
        assets = [AssetKey.from_user_string(a) for a in selection]
        for first, last, chunk in range_chunks(parts, order, 1 if alone else limit):
            key = f"split-{run_id}-{first}" if first == last else f"split-{run_id}-{first}..{last}"
            tags = {SPLIT_FROM_TAG: run_id, "medialens/files": str(len(chunk))}
            runs.append(partitions_run_request(first, last, run_key=key, tags=tags, asset_selection=assets))
    return runs


@run_failure_sensor(
    name="failed_batch_sensor",
    monitored_jobs=[analyse_media_job],
    request_job=analyse_media_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="When a run over several media failed for some of them, runs the others on (what they "
    "still lack, without the files that failed); a crash that names no file retries each file alone.",
)
def failed_batch_sensor(context: RunFailureSensorContext) -> list[RunRequest] | SkipReason:
    run = context.dagster_run
    tags = run.tags
    if BACKFILL_ID_TAG in tags:
        return SkipReason(f"run {run.run_id} belongs to backfill {tags[BACKFILL_ID_TAG]}: retried by the backfill")
    if tags.get(WILL_RETRY_TAG) == "true":
        return SkipReason(f"run {run.run_id} crashed and Dagster's run retries re-execute it")
    if tags.get("medialens/launched_by") == "cli":
        return SkipReason(f"run {run.run_id} was launched by the CLI, which splits its own runs")
    first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not first or not last or first == last:
        return SkipReason(f"run {run.run_id} covered one media: its failure is that file's own")
    order = list(context.instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    members = range_members(order, first, last)
    if not members:
        return SkipReason(f"run {run.run_id}: its partitions {first}..{last} no longer exist")
    failed = failed_partitions(context.get_step_failure_events())
    graph = context.repository_def.asset_graph if context.repository_def else None
    if graph is None:
        return SkipReason("no repository to plan from")
    missing = missing_by_partition(context.instance, cast(Definitions, GraphOnly(graph)), members)
    runs = rerun_requests(run.run_id, members, failed, missing, order)
    named = ", ".join(f"{k} ({v})" for k, v in failed.items()) or "none named: each file alone"
    context.log.info(f"run {run.run_id} failed for {named}; {len(runs)} run(s) for the other files")
    return runs or SkipReason(f"run {run.run_id}: nothing left to do for the other files")
