"""A guarded run records its worker, never waits for a pool slot silently or forever, takes back a
slot whose holder died, and ends CANCELED within seconds on Ctrl-C or SIGTERM, wherever it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import create_run_for_test
from dagster._core.utils import make_new_run_id

from media_assets.plumbing.dead_runs import waiting_pools
from media_assets.plumbing.run_guard import POOL_WAIT_ENV, pool_wait_limit
from media_assets.service.headless import instance_yaml
from resources.workers import Worker, hostname, process_start, this_worker
from tests.media_assets.guard_jobs import POOL, run_once

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME as the CLI makes it (batching storage, gpu pool of one, crash safety)."""
    path = tmp_path / "dagster_home"
    path.mkdir()
    (path / "dagster.yaml").write_text(instance_yaml(path))
    return path


@pytest.fixture
def instance(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as inst:
        inst.event_log_storage.set_concurrency_slots(POOL, 1)
        yield inst


def _holder(instance: DagsterInstance, worker: Worker) -> DagsterRun:
    """A STARTED run of `worker` holding the gpu slot (as a run in the middle of a model step)."""
    run_id = make_new_run_id()
    run = create_run_for_test(
        instance, job_name="analyse_media", run_id=run_id, status=DagsterRunStatus.STARTED, tags=worker.tags(run_id)
    )
    assert instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "ocr_text").is_claimed
    return run


def _messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id)]


def _slots_of(instance: DagsterInstance, run_id: str) -> list[str]:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return [s.step_key for s in info.claimed_slots if s.run_id == run_id] + [
        p.step_key for p in info.pending_steps if p.run_id == run_id
    ]


def test_the_wait_limit_is_read_from_the_environment() -> None:
    assert pool_wait_limit({}) == 3600.0
    assert pool_wait_limit({POOL_WAIT_ENV: "90"}) == 90.0
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ValueError, match=POOL_WAIT_ENV):
            pool_wait_limit({POOL_WAIT_ENV: bad})


def test_a_run_records_the_process_it_runs_in(instance: DagsterInstance) -> None:
    run = instance.get_run_by_id(run_once(instance))
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert Worker.from_tags(run.tags, run.run_id) == this_worker()
    assert _slots_of(instance, run.run_id) == []


def test_it_gives_up_on_a_slot_a_live_run_keeps_and_names_that_run(
    instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POOL_WAIT_ENV, "8")
    holder = _holder(instance, this_worker())  # alive: this very process
    run = instance.get_run_by_id(run_once(instance))
    assert run is not None and run.status == DagsterRunStatus.FAILURE
    said = "\n".join(_messages(instance, run.run_id))
    assert f"waiting for the gpu pool, held by run {holder.run_id} (STARTED since" in said
    failure = next(e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_run_failure)
    error = failure.dagster_event.event_specific_data.error  # type: ignore[union-attr]
    assert error.cls_name == "PoolWaitTimeout"
    assert "gave up after waiting" in error.message and holder.run_id in error.message
    assert POOL_WAIT_ENV in error.message
    assert _slots_of(instance, run.run_id) == []  # it queues for nothing any more
    claimed = instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
    assert [s.run_id for s in claimed] == [holder.run_id]  # the live holder keeps its slot


def test_a_slot_whose_holder_died_is_taken_back(instance: DagsterInstance) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = process_start(child.pid)
    child.kill()
    child.wait()
    assert started is not None
    holder = _holder(instance, Worker(hostname(), child.pid, started))
    run = instance.get_run_by_id(run_once(instance))
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    dead = instance.get_run_by_id(holder.run_id)
    assert dead is not None and dead.status == DagsterRunStatus.FAILURE
    assert any(f"worker pid {child.pid}" in m and "is gone" in m for m in _messages(instance, holder.run_id))


def _start_job(home: Path, work_s: float, swallow: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "GUARD_TEST_WORK_S": str(work_s), POOL_WAIT_ENV: "600"}
    env["GUARD_TEST_SWALLOW"] = "1" if swallow else "0"
    return subprocess.Popen(
        [sys.executable, "-m", "tests.media_assets.guard_jobs"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(instance: DagsterInstance, proc: subprocess.Popen[str], ready: str) -> DagsterRun:
    """The job's run once it is `ready`: "waiting" for a slot or "working" in its first asset."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for record in instance.get_run_records():
            run = record.dagster_run
            if run.job_name != "guard_test" or run.status != DagsterRunStatus.STARTED:
                continue
            if ready == "waiting" and waiting_pools(instance, run.run_id, [POOL]):
                return run
            if ready == "working" and any(
                "first_model" in m and "Started execution" in m for m in _messages(instance, run.run_id)
            ):
                return run
        time.sleep(0.2)
    pytest.fail(f"the job's run never got {ready}")


def _stops_canceled(instance: DagsterInstance, proc: subprocess.Popen[str], run: DagsterRun, sig: int) -> None:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 10 s after signal {sig}")
    took = time.monotonic() - sent
    assert proc.returncode in (0, 130), proc.communicate()
    ended = instance.get_run_by_id(run.run_id)
    assert ended is not None and ended.status == DagsterRunStatus.CANCELED, (ended, took)
    assert _slots_of(instance, run.run_id) == []


def test_ctrl_c_while_waiting_for_a_slot_cancels_the_run(instance: DagsterInstance, home: Path) -> None:
    _holder(instance, this_worker())
    proc = _start_job(home, 0)
    run = _wait_for(instance, proc, "waiting")
    _stops_canceled(instance, proc, run, signal.SIGINT)


def test_sigterm_inside_an_asset_cancels_the_run(instance: DagsterInstance, home: Path) -> None:
    proc = _start_job(home, 60)
    run = _wait_for(instance, proc, "working")
    _stops_canceled(instance, proc, run, signal.SIGTERM)
    # the next run takes the slot at once
    assert instance.get_run_by_id(run_once(instance)).status == DagsterRunStatus.SUCCESS  # type: ignore[union-attr]


def test_an_interrupt_that_asset_code_swallowed_is_raised_again(instance: DagsterInstance, home: Path) -> None:
    proc = _start_job(home, 60, swallow=True)
    run = _wait_for(instance, proc, "working")
    _stops_canceled(instance, proc, run, signal.SIGTERM)
    messages = _messages(instance, run.run_id)
    assert any("Run canceled: interrupted" in m for m in messages), messages[-5:]
