"""What every per-media asset shares: partitions, backfill policy, and the per-partition loop.

A run may cover many partitions (a backfill chunk), so each asset loops over
`context.partition_keys` with models loaded once. A bad file fails only its own partition's work:
the others are finished and logged, then the step reports every failed partition by name.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DagsterInvariantViolationError,
    Failure,
    MaterializeResult,
    MetadataValue,
)

from media_assets.analysis.inspect import MediaRejected
from media_assets.plumbing.partitions import media_partitions
from resources.atomic import StoreFull, is_no_space

# Partitions per run (upload batches, backfills, sensors' re-runs). A daemon-launched run is a new
# process that loads its models again (~5 s for all of them here), so small runs multiply that:
# bench/inbox.py, 20 dropped files: one run 21.4 s, runs of 8 (three) 48.3 s, bare loop 15.7 s.
# The daemon that `medialens reanalyse --wait` starts sets it to the command's --max-per-run
# (media_assets/service/reanalyse.py).
MAX_PARTITIONS_PER_RUN = max(1, int(os.environ.get("MEDIALENS_MAX_PARTITIONS_PER_RUN") or 32))

PER_MEDIA: dict[str, Any] = {
    "partitions_def": media_partitions,
    "backfill_policy": BackfillPolicy.multi_run(MAX_PARTITIONS_PER_RUN),
    "io_manager_key": "manifests",
}

Manifest = dict[str, Any]
Manifests = dict[str, Manifest]

# Progress lines within one file (decoded/extracted/transcribed N %) only for media at least this
# long: a 10-second clip is done before anyone reads them.
LONG_MEDIA_S = 60.0


class StepLog:
    """The run log for per-partition chatter. Every line is an event-log write (a sqlite commit
    locally), so a step over 20 short files that logged each one spent more time logging than some
    models ran; info lines are kept to one per `every_s` (the first always), while warnings, errors
    and the progress of long media always go through."""

    def __init__(self, log: Any, every_s: float = 2.0) -> None:
        self._log, self.every_s = log, every_s
        self._last = float("-inf")
        self.dropped = 0

    def info(self, msg: str) -> None:
        """Throttled: a line now and then shows the step is moving; the step's result has the detail."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.dropped += 1
            return
        self._last = now
        self._log.info(msg)

    def progress(self, msg: str) -> None:
        """Always logged: callers only report progress within media of LONG_MEDIA_S or more."""
        self._last = time.monotonic()
        self._log.info(msg)

    def warning(self, msg: str) -> None:
        self._log.warning(msg)

    def error(self, msg: str) -> None:
        self._log.error(msg)

    def exception(self, msg: str) -> None:
        self._log.exception(msg)


_step_logs: weakref.WeakKeyDictionary[Any, StepLog] = weakref.WeakKeyDictionary()


def step_log(context: Any) -> StepLog:
    """The step's StepLog (one per execution context, so the throttle spans the whole step)."""
    found = _step_logs.get(context)
    if found is None:
        found = _step_logs[context] = StepLog(context.log)
    return found


# What each partition of a step cost, in its own materialisation's metadata (numbers, so the UI
# plots them per partition over time); `medialens stats` sums them up (media_assets/service/stats.py).
USAGE_NOTE = (
    "wall_s: this partition's wall seconds in the step. cpu_s: the process's CPU seconds (user+sys, "
    "all threads and waited-for children) spent while this partition was worked on. model_s: wall "
    "seconds inside the model calls, as the asset timed them (absent for assets without a model). "
    "peak_rss_mib: the process's peak resident memory so far, read at the end of this partition: "
    "process-wide and never decreasing within a run, so in a run over several media it is an upper "
    "bound for each, reached by the largest so far. A transcript made in the background thread beside "
    "the vision steps (its manifest says in_background): model_s is that thread's time, more than the "
    "step's wall_s, and its CPU is in the cpu_s of the steps it ran beside."
)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@dataclass(frozen=True)
class Usage:
    """What one partition's work cost (see USAGE_NOTE)."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    model_s: float | None

    @classmethod
    def measure(cls, started_wall: float, started_cpu: float, manifest: Manifest) -> Usage:
        model = manifest.get("model_seconds")
        return cls(
            wall_s=round(time.perf_counter() - started_wall, 3),
            cpu_s=round(_cpu_seconds() - started_cpu, 3),
            peak_rss_mib=round(_peak_rss_mib(), 1),
            model_s=round(float(model), 3) if isinstance(model, int | float) else None,
        )

    def as_metadata(self) -> dict[str, Any]:
        out = {
            "wall_s": MetadataValue.float(self.wall_s),
            "cpu_s": MetadataValue.float(self.cpu_s),
            "peak_rss_mib": MetadataValue.float(self.peak_rss_mib),
        }
        if self.model_s is not None:
            out["model_s"] = MetadataValue.float(self.model_s)
        return out


def record_usage(context: Any, key: str, usage: Usage) -> None:
    """Put one partition's usage into that partition's materialisation (a run over many partitions
    emits one event per partition; Dagster merges this into the partition's own event).

    Dagster's `add_asset_metadata(partition_key=...)` validates the key by listing every `media`
    partition, a query per call: 4.8 s for 32 partitions of a 5,000-media library, in every asset's
    step. `key` is one of the step's own partition keys, so it goes straight into the step's
    metadata, as `add_asset_metadata` does after its validation (the public call is the fallback).
    A context built for a direct call (tests) has no events to merge into: nothing is recorded."""
    metadata = {**usage.as_metadata(), "resource_usage": MetadataValue.text(USAGE_NOTE)}
    step = getattr(getattr(context, "op_execution_context", None), "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if step is not None and hasattr(accumulator, "with_additional_asset_metadata"):
        step._metadata_accumulator = accumulator.with_additional_asset_metadata(  # type: ignore[union-attr]
            asset_key=context.asset_key, partition_key=key, metadata=metadata
        )
        return
    with suppress(AttributeError, DagsterInvariantViolationError):
        context.add_asset_metadata(metadata, partition_key=key)


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
    log = step_log(context)
    done: dict[str, Manifest] = {}
    failed: dict[str, str] = {}
    step_started = time.perf_counter()
    for i, key in enumerate(keys, 1):
        started, started_cpu = time.perf_counter(), _cpu_seconds()
        try:
            done[key] = work(key)
        except Exception as exc:  # one bad file must not stop the others
            if isinstance(exc, MediaRejected) and source_names and key in source_names:
                exc = exc.naming(source_names[key])
            failed[key] = no_space_reason(exc) or str(exc)
            log.error(f"[{i}/{len(keys)}] {key}: FAILED: {failed[key]}")
            if not isinstance(exc, ValueError | OSError):
                log.exception(f"{key}: unexpected error")
            continue
        record_usage(context, key, Usage.measure(started, started_cpu, done[key]))
        log.info(f"[{i}/{len(keys)}] {key}: done in {time.perf_counter() - started:.1f} s")
    if len(keys) > 1:
        context.log.info(
            f"{len(done)} of {len(keys)} partitions done in {time.perf_counter() - step_started:.1f} s"
            + (f", {len(failed)} failed" if failed else "")
        )
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


def no_space_reason(exc: BaseException) -> str | None:
    """What to tell the user about a full disk: StoreFull's own message (the store's writes name
    the path, the bytes needed and free); a full disk elsewhere (a model's cache, /tmp) by its
    path. None for any other error."""
    if isinstance(exc, StoreFull):
        return str(exc)
    if not isinstance(exc, OSError) or not is_no_space(exc):
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"disk full{where}: {exc.strerror or exc} (free space and run again)"


def failed_partitions(events: Iterable[Any]) -> dict[str, str]:
    """Partition -> reason, from the step failures of a run over several partitions (the
    `failed_partitions` metadata `for_each_partition` attaches); the first failure of a partition
    wins. Empty when no step named its partitions (a crash, or a single-partition step)."""
    out: dict[str, str] = {}
    for event in events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data.user_failure_data
        entry = data.metadata.get("failed_partitions") if data is not None and data.metadata else None
        value = getattr(entry, "value", entry)
        if isinstance(value, dict):
            for key, reason in value.items():
                out.setdefault(str(key), f"{event.step_key}: {reason}")
    return out


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
