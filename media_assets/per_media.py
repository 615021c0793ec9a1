"""What every per-media asset shares: partitions, backfill policy, and the per-partition loop.

A run may cover many partitions (a backfill chunk), so each asset loops over
`context.partition_keys` with models loaded once. A bad file fails only its own partition's work:
the others are finished and logged, then the step reports every failed partition by name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue

from media_assets.analysis.inspect import MediaRejected
from media_assets.partitions import media_partitions

# Partitions per run when a backfill covers many media: models load once per run. The daemon that
# `medialens reanalyse --wait` starts sets it to the command's --max-per-run (media_assets/reanalyse.py).
MAX_PARTITIONS_PER_RUN = max(1, int(os.environ.get("MEDIALENS_MAX_PARTITIONS_PER_RUN") or 8))

PER_MEDIA: dict[str, Any] = {
    "partitions_def": media_partitions,
    "backfill_policy": BackfillPolicy.multi_run(MAX_PARTITIONS_PER_RUN),
    "io_manager_key": "manifests",
}

Manifest = dict[str, Any]
Manifests = dict[str, Manifest]


def for_each_partition(
    context: AssetExecutionContext,
    work: Callable[[str], Manifest],
    source_names: Mapping[str, str] | None = None,
) -> dict[str, Manifest]:
    """Run `work(key)` for every partition of the run; raise one Failure naming the bad ones.

    `source_names`: the user's file name per partition, so a refusal names their file rather than
    our content-addressed copy of it.
    """
    keys = context.partition_keys
    done: dict[str, Manifest] = {}
    failed: dict[str, str] = {}
    for i, key in enumerate(keys, 1):
        started = time.perf_counter()
        try:
            done[key] = work(key)
        except Exception as exc:  # one bad file must not stop the others
            if isinstance(exc, MediaRejected) and source_names and key in source_names:
                exc = exc.naming(source_names[key])
            failed[key] = str(exc)
            context.log.error(f"[{i}/{len(keys)}] {key}: FAILED: {exc}")
            if not isinstance(exc, ValueError | OSError):
                context.log.exception(f"{key}: unexpected error")
            continue
        context.log.info(f"[{i}/{len(keys)}] {key}: done in {time.perf_counter() - started:.1f} s")
    if failed:
        first = next(iter(failed.values()))
        raise Failure(
            description=first
            if len(keys) == 1
            else f"{len(failed)} of {len(keys)} partitions failed: "
            + "; ".join(f"{k}: {v}" for k, v in failed.items()),
            metadata={
                "failed_partitions": MetadataValue.json(failed),
                "succeeded_partitions": MetadataValue.json(sorted(done)),
            },
        )
    return done


def per_media_result(
    manifests: Mapping[str, Manifest],
    version: str,
    detail: Callable[[Manifest], dict[str, Any]],
    columns: list[str],
) -> MaterializeResult:
    """The step's result: a one-partition run shows that media's `detail`, a run over many a table
    with `columns` per partition."""
    one = len(manifests) == 1
    metadata = detail(next(iter(manifests.values()))) if one else summary_metadata(manifests, columns)
    return MaterializeResult(value=manifests, metadata={"version": version, **metadata})


def summary_metadata(manifests: Mapping[str, Manifest], columns: list[str]) -> dict[str, Any]:
    """A per-partition table for runs over several partitions (single-partition runs add detail)."""
    rows = [{"partition": k, **{c: m.get(c) for c in columns}} for k, m in manifests.items()]
    lines = ["| partition | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in ["partition", *columns]) + " |" for r in rows]
    return {"partitions": len(rows), "per_partition": MetadataValue.md("\n".join(lines))}
