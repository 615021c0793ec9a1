"""Runs whose worker is gone: found, ended with a reason, and their pool slots given back.

A run killed with SIGKILL (or by the OOM killer, a power cut, a container restart) never writes
its end: Dagster keeps it STARTED forever, and the `gpu` pool slot its step had claimed stays
claimed, so every later run waits for it (dagster#28456, #32560). Each run records where it
executes (host, pid, process start time: resources/workers.py) in its tags; a run whose recorded
process no longer exists on this host is dead. Three callers use the same check:
- the CLI, before it launches a run and while its run waits for a pool (`end_dead_runs`);
- Dagster's run monitoring on the daemon path, through `MonitoredRunLauncher.check_run_worker_health`
  (media_assets/plumbing/run_launcher.py), which then fails the run and, after
  `free_slots_after_run_end_seconds`, frees its slots;
- every guarded run while it waits for a pool (media_assets/plumbing/run_guard.py).
A run of another host is never judged from here (its pids mean nothing on this machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.storage.dagster_run import DagsterRun, RunsFilter

from resources.workers import Liveness, Worker, hostname, pid_alive_since

ACTIVE_STATUSES = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
TERMINAL_STATUSES = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

# Dagster's own record of a run worker's pid: the run worker's first engine event, or the in-process
# executor's (`EngineEventData.in_process(pid)`); used for runs that carry no worker tags (made by
# an earlier medialens, or in the moment between RUN_START and the executor recording its tags).
_PID_EVENT_PREFIXES = ("Started process for run (pid:", "Executing steps in process (pid:")

log = logging.getLogger("medialens")


@dataclass(frozen=True)
class WorkerCheck:
    """What is known about a run's worker: `liveness` None when nothing was recorded."""

    liveness: Liveness | None
    where: str  # "pid 1234 on host h", for messages

    @property
    def gone(self) -> bool:
        return self.liveness is Liveness.GONE


@dataclass(frozen=True)
class EndedRun:
    """A dead run this module ended (what the CLI prints and tests check)."""

    run_id: str
    status: DagsterRunStatus
    reason: str


def _pid_from_events(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when) from the latest engine event in which Dagster logged the run worker's pid."""
    found: tuple[int, float] | None = None
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        if not entry.message.startswith(_PID_EVENT_PREFIXES) or entry.dagster_event is None:
            continue
        data = entry.dagster_event.engine_event_data
        raw: Any = data.metadata.get("pid") if data is not None else None
        try:
            found = (int(getattr(raw, "value", raw)), float(entry.timestamp))
        except (TypeError, ValueError):
            continue
    return found


def _local_instance(instance: DagsterInstance) -> bool:
    """Whether every process that runs on this instance runs on this host (sqlite storage: a file
    no second machine can share safely), so a pid without a host tag is one of ours."""
    return "sqlite" in type(instance.run_storage).__name__.lower()


def check_worker(instance: DagsterInstance, run: DagsterRun) -> WorkerCheck:
    """Is the process executing `run` still there? Tags first, then Dagster's pid event."""
    worker = Worker.from_tags(run.tags, run.run_id)
    if worker is not None:
        return WorkerCheck(worker.liveness(), worker.describe())
    if not _local_instance(instance):
        return WorkerCheck(None, "an unrecorded worker")
    event = _pid_from_events(instance, run.run_id)
    if event is None:
        return WorkerCheck(None, "an unrecorded worker")
    pid, since = event
    where = f"pid {pid} on host {hostname()}"
    return WorkerCheck(Liveness.ALIVE if pid_alive_since(pid, since) else Liveness.GONE, where)


def dead_reason(check: WorkerCheck) -> str:
    return f"worker {check.where} is gone (killed, out of memory, or the machine restarted)"


def end_run(instance: DagsterInstance, run: DagsterRun, reason: str) -> DagsterRunStatus:
    """End a run whose worker is gone: CANCELED if someone had asked it to stop, else FAILURE
    (so Dagster's run retries and failed_batch_sensor treat it as the crash it was); then give its
    pool slots back. Returns the status it now has."""
    if run.status == DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, f"Run canceled: {reason}.")
        status = DagsterRunStatus.CANCELED
    else:
        instance.report_run_failed(
            run,
            f"Run failed: {reason}. Nothing it had not finished was kept; run it again to redo that part.",
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        status = DagsterRunStatus.FAILURE
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return status


def end_dead_runs(instance: DagsterInstance, progress: Callable[[str], None] | None = None) -> list[EndedRun]:
    """End every active run of this instance whose worker is gone, and free the slots still held
    by runs that already ended; returns what it ended. Cheap when nothing is active."""
    ended: list[EndedRun] = []
    for record in instance.get_run_records(RunsFilter(statuses=ACTIVE_STATUSES)):
        run = record.dagster_run
        check = check_worker(instance, run)
        if not check.gone:
            continue
        fresh = instance.get_run_by_id(run.run_id)  # it may have ended while we looked
        if fresh is None or fresh.status not in ACTIVE_STATUSES:
            continue
        reason = dead_reason(check)
        status = end_run(instance, fresh, reason)
        ended.append(EndedRun(run.run_id, status, reason))
        message = f"ended run {run.run_id} ({status.value}): {reason}; its pool slots are free again"
        (progress or log.warning)(message)
    free_slots_of_ended_runs(instance)
    return ended


def free_slots_of_ended_runs(instance: DagsterInstance) -> list[str]:
    """Give back pool slots (and pending claims) of runs that ended or were deleted without
    releasing them; the daemon's `free_slots_after_run_end_seconds` does the same, the CLI has no
    daemon. Returns the run ids it freed."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    run_ids = set(storage.get_concurrency_run_ids())
    for key in storage.get_concurrency_keys():
        run_ids.update(slot.run_id for slot in storage.get_concurrency_info(key).claimed_slots if slot.run_id)
    freed: list[str] = []
    for run_id in sorted(run_ids):
        run = instance.get_run_by_id(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            storage.free_concurrency_slots_for_run(run_id)
            freed.append(run_id)
    return freed


@dataclass(frozen=True)
class PoolHolder:
    """A run holding a slot of a pool, for "waiting for the gpu pool, held by ..." messages."""

    run_id: str
    step_key: str
    status: str
    since: str  # when that run started (local time), or "?"

    def describe(self) -> str:
        return f"run {self.run_id} ({self.status} since {self.since}, step {self.step_key})"


def pool_holders(instance: DagsterInstance, pool: str, exclude_run: str | None = None) -> list[PoolHolder]:
    """Who holds `pool`'s slots now (other than `exclude_run`)."""
    out: list[PoolHolder] = []
    for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots:
        if not slot.run_id or slot.run_id == exclude_run:
            continue
        record = next(iter(instance.get_run_records(RunsFilter(run_ids=[slot.run_id]), limit=1)), None)
        status = record.dagster_run.status.value if record else "DELETED"
        started = record.start_time if record else None
        since = datetime.fromtimestamp(started, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S") if started else "?"
        out.append(PoolHolder(slot.run_id, slot.step_key or "?", status, since))
    return out


def waiting_pools(instance: DagsterInstance, run_id: str, pools: Iterable[str]) -> list[str]:
    """The pools in which `run_id` has a step waiting for a slot (pending, not yet assigned)."""
    waiting: list[str] = []
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        if any(p.run_id == run_id and p.assigned_timestamp is None for p in info.pending_steps):
            waiting.append(pool)
    return waiting
