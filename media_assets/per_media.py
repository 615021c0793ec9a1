"""What every per-media asset shares: partitions, backfill policy, and the per-partition loop.

A run may cover many partitions (a backfill chunk), so each asset loops over
`context.partition_keys` with models loaded once. A bad file fails only its own partition's work:
the others are finished and logged, then the step reports every failed partition by name.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue

from media_assets.analysis.inspect import MediaRejected
from media_assets.partitions import media_partitions
from resources.atomic import StoreFull, is_no_space

# Partitions per run (upload batches, backfills, sensors' re-runs). A daemon-launched run is a new
# process that loads its models again (~5 s for all of them here), so small runs multiply that:
# bench/inbox.py, 20 dropped files: one run 21.4 s, runs of 8 (three) 48.3 s, bare loop 15.7 s.
# The daemon that `medialens reanalyse --wait` starts sets it to the command's --max-per-run
# (media_assets/reanalyse.py).
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
        started = time.perf_counter()
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
