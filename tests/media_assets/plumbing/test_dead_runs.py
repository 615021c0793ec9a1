"""Runs whose worker is gone are ended with the reason and give their pool slots back; runs whose
worker lives, or runs on another host, are never touched. The same check answers Dagster's run
monitoring through MonitoredRunLauncher."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import create_run_for_test
from dagster._core.utils import make_new_run_id

from media_assets.plumbing.dead_runs import (
    end_dead_runs,
    free_slots_of_ended_runs,
    pool_holders,
    waiting_pools,
)
from media_assets.plumbing.run_launcher import MonitoredRunLauncher
from media_assets.service.headless import CRASH_SAFETY, storage_config
from resources.workers import Worker, hostname, process_start, this_worker

POOL = "gpu"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """medialens's instance settings: batching storage, a gpu pool of one slot, crash safety."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    overrides = {"storage": storage_config(home), "concurrency": {"pools": {"default_limit": 1}}, **CRASH_SAFETY}
    with instance_for_test(temp_dir=str(home), overrides=overrides) as inst:
        inst.event_log_storage.set_concurrency_slots(POOL, 1)
        yield inst


@pytest.fixture(scope="module")
def dead_worker() -> Worker:
    """A process that existed and is gone (its pid is not reused within the test)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = process_start(child.pid)
    child.kill()
    child.wait()
    assert started is not None
    return Worker(hostname(), child.pid, started)


def _run(
    instance: DagsterInstance, worker: Worker | None, status: DagsterRunStatus = DagsterRunStatus.STARTED
) -> DagsterRun:
    run_id = make_new_run_id()
    tags = worker.tags(run_id) if worker is not None else {}
    return create_run_for_test(instance, job_name="analyse_media", run_id=run_id, status=status, tags=tags)


def _claim(instance: DagsterInstance, run: DagsterRun, step: str) -> None:
    claim = instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, step)
    assert claim.is_claimed


def _claimed_by(instance: DagsterInstance) -> list[str]:
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def test_a_dead_run_is_failed_with_the_reason_and_its_slot_freed(
    instance: DagsterInstance, dead_worker: Worker
) -> None:
    dead = _run(instance, dead_worker)
    _claim(instance, dead, "ocr_text")
    alive = _run(instance, this_worker())
    elsewhere = _run(instance, Worker("another-host", dead_worker.pid, dead_worker.started))
    waiting = _run(instance, this_worker())
    assert not instance.event_log_storage.claim_concurrency_slot(POOL, waiting.run_id, "poses").is_claimed
    assert waiting_pools(instance, waiting.run_id, [POOL]) == [POOL]
    holders = pool_holders(instance, POOL, exclude_run=waiting.run_id)
    assert [h.run_id for h in holders] == [dead.run_id]
    assert f"run {dead.run_id} (STARTED since" in holders[0].describe()

    said: list[str] = []
    ended = end_dead_runs(instance, said.append)

    assert [(e.run_id, e.status) for e in ended] == [(dead.run_id, DagsterRunStatus.FAILURE)]
    reason = f"worker pid {dead_worker.pid} on host {dead_worker.host} is gone"
    assert reason in ended[0].reason and reason in said[0]
    assert dead.run_id not in _claimed_by(instance)
    failure = instance.get_run_by_id(dead.run_id)
    assert failure is not None and failure.status == DagsterRunStatus.FAILURE
    records = instance.all_logs(dead.run_id)
    assert any(reason in r.message for r in records)
    for run in (alive, elsewhere, waiting):
        still = instance.get_run_by_id(run.run_id)
        assert still is not None and still.status == DagsterRunStatus.STARTED
    assert end_dead_runs(instance) == []  # nothing more to do


def test_a_dead_run_asked_to_stop_ends_canceled(instance: DagsterInstance, dead_worker: Worker) -> None:
    run = _run(instance, dead_worker, DagsterRunStatus.CANCELING)
    _claim(instance, run, "faces")
    (ended,) = end_dead_runs(instance)
    assert ended.status == DagsterRunStatus.CANCELED
    assert _claimed_by(instance) == []


def test_a_run_without_tags_is_judged_by_the_pid_dagster_logged(instance: DagsterInstance, dead_worker: Worker) -> None:
    legacy = _run(instance, None)  # e.g. made by an earlier medialens
    instance.report_engine_event(
        f"Started process for run (pid: {dead_worker.pid}).", legacy, EngineEventData.in_process(dead_worker.pid)
    )
    mine = _run(instance, None)
    me = this_worker().pid
    instance.report_engine_event(f"Executing steps in process (pid: {me})", mine, EngineEventData.in_process(me))
    unknown = _run(instance, None)  # nothing recorded at all: left alone
    copied = _run(instance, None)  # tags copied from the run it retries are not its worker
    instance.add_run_tags(copied.run_id, dead_worker.tags("parent"))

    ended = end_dead_runs(instance)
    assert [e.run_id for e in ended] == [legacy.run_id]
    for run in (mine, unknown, copied):
        still = instance.get_run_by_id(run.run_id)
        assert still is not None and still.status == DagsterRunStatus.STARTED


def test_slots_of_runs_that_ended_without_releasing_them_are_freed(instance: DagsterInstance) -> None:
    ended = _run(instance, this_worker(), DagsterRunStatus.SUCCESS)  # e.g. killed right after its end
    _claim(instance, ended, "tags")
    assert _claimed_by(instance) == [ended.run_id]
    assert free_slots_of_ended_runs(instance) == [ended.run_id]
    assert _claimed_by(instance) == []


def test_run_monitoring_learns_from_the_launcher_that_a_worker_is_gone(
    instance: DagsterInstance, dead_worker: Worker
) -> None:
    launcher = instance.run_launcher
    assert isinstance(launcher, MonitoredRunLauncher) and launcher.supports_check_run_worker_health
    dead = _run(instance, dead_worker)
    _claim(instance, dead, "ocr_text")
    result = launcher.check_run_worker_health(dead)
    assert result.status == WorkerStatus.FAILED
    assert f"pid {dead_worker.pid}" in (result.msg or "")
    assert _claimed_by(instance) == []  # given back at once, not a monitoring poll later
    alive = _run(instance, this_worker())
    assert launcher.check_run_worker_health(alive).status == WorkerStatus.RUNNING
    remote = _run(instance, Worker("another-host", 1, 0.0))
    assert launcher.check_run_worker_health(remote).status == WorkerStatus.RUNNING
