"""Dagster's default run launcher, plus the worker health check its run monitoring needs.

Dagster's run monitoring (dagster.yaml `run_monitoring`) fails runs whose worker died, but only
when the launcher can say so, and `DefaultRunLauncher` cannot: a run worker SIGKILLed on the
daemon path stayed STARTED forever and kept its `gpu` pool slot. This launcher answers from the
worker each run records in its tags (media_assets/plumbing/dead_runs.py), which also covers runs the
launcher never launched: `medialens analyse` runs in-process in the CLI's own process.
"""

from __future__ import annotations

from dagster import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from media_assets.plumbing.dead_runs import check_worker, dead_reason


class MonitoredRunLauncher(DefaultRunLauncher):
    """Launches runs like `DefaultRunLauncher`; tells run monitoring when a run's worker is gone."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """FAILED only when the recorded worker is certainly gone; a worker on another host or one
        not recorded yet counts as running (start_timeout_seconds covers runs that never start)."""
        check = check_worker(self._instance, run)
        if check.gone:
            # Run monitoring fails the run next; its slots go back now rather than a poll later,
            # so the runs queued behind it (its own retry included) need not wait for them.
            self._instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            return CheckRunHealthResult(WorkerStatus.FAILED, dead_reason(check))
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker {check.where}")
