"""`stale_model_sensor`: after a deploy changed a model or setting, redo what it made stale, in chunks.

Off by default (re-analysing a library costs hours of CPU; a user turns it on in the UI, or runs
`medialens reanalyse` once). When on, each tick compares the code versions of the per-media assets
with the ones it already handled (the cursor). For new versions it plans like `medialens
reanalyse --all-stale` (media_assets/service/reanalyse.py): exact stale (asset, partition) pairs, dependants
included, never the unchanged upstream assets, and never partitions that were simply not analysed
yet (the upload sensor owns those). It then requests runs of at most `MAX_PARTITIONS_PER_RUN`
contiguous partitions (a partition-range run of the analysis job, subset to the stale assets),
and at most `MAX_RUNS_PER_TICK` runs a tick, so a deploy that makes 10,000 files stale is worked
through over many ticks rather than queued all at once. The partitions already requested for the
current versions are remembered in the cursor, so a tick never requests them twice; new versions
start over.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from media_assets.assets.jobs import ANALYSE_JOB_NAME
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME, partitions_run_request, range_chunks
from media_assets.plumbing.per_media import MAX_PARTITIONS_PER_RUN
from media_assets.plumbing.staleness import GraphOnly

MAX_RUNS_PER_TICK = 4
NEVER = "never materialised"


def versions_digest(graph: Any) -> str:
    """One hash of the code versions of every per-media asset."""
    versions = {
        k.to_user_string(): graph.get(k).code_version or ""
        for k in graph.get_all_asset_keys()
        if graph.get(k).partitions_def is not None and graph.get(k).is_materializable
    }
    return hashlib.sha1(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]


@sensor(
    job_name=ANALYSE_JOB_NAME,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="After a deploy changed a model or a setting, re-analyses the stale partitions in runs of "
    f"at most {MAX_PARTITIONS_PER_RUN} media, {MAX_RUNS_PER_TICK} runs a tick (off by default; "
    "`medialens reanalyse` does the same once, as a backfill).",
)
def stale_model_sensor(context: SensorEvaluationContext) -> SensorResult:
    from media_assets.service.reanalyse import plan

    graph = context.repository_def.asset_graph if context.repository_def else None
    if graph is None:
        return SensorResult(skip_reason="no repository")
    digest = versions_digest(graph)
    cursor = json.loads(context.cursor) if context.cursor else {}
    requested: set[str] = set(cursor.get("requested", [])) if cursor.get("versions") == digest else set()

    p = plan(context.instance, cast(Definitions, GraphOnly(graph)), None, all_stale=True)
    # partitions never analysed belong to the upload sensor (in flight, or failed and waiting for a user)
    items = [i for i in p.items if i.reason != NEVER and f"{i.asset}/{i.partition}" not in requested]
    if not items:
        new_cursor = json.dumps({"versions": digest, "requested": sorted(requested)})
        return SensorResult(skip_reason="nothing stale that was not already requested", cursor=new_cursor)

    # one asset selection per group of partitions needing the same assets, then contiguous ranges
    by_partition: dict[str, set[str]] = {}
    for i in items:
        by_partition.setdefault(i.partition, set()).add(i.asset)
    groups: dict[tuple[str, ...], list[str]] = {}
    for part, assets in by_partition.items():
        groups.setdefault(tuple(sorted(assets)), []).append(part)
    order = list(context.instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    runs: list[RunRequest] = []
    for selection, parts in sorted(groups.items()):
        for first, last, members in range_chunks(parts, order, MAX_PARTITIONS_PER_RUN):
            if len(runs) >= MAX_RUNS_PER_TICK:
                break
            runs.append(
                partitions_run_request(
                    first,
                    last,
                    run_key=f"stale-{digest}-{'+'.join(selection)}-{first}-{last}",
                    asset_selection=[AssetKey.from_user_string(a) for a in selection],
                    tags={"medialens/launched_by": "stale_model_sensor", "medialens/versions": digest},
                )
            )
            requested.update(f"{a}/{m}" for a in selection for m in members)
    left = len(items) - sum(1 for i in items if f"{i.asset}/{i.partition}" in requested)
    context.log.info(f"requested {len(runs)} run(s); {left} stale asset partition(s) left for later ticks")
    return SensorResult(run_requests=runs, cursor=json.dumps({"versions": digest, "requested": sorted(requested)}))
