"""Run workers launched by a real `dagster-daemon` for dropped files: SIGTERM ends a run CANCELED
within seconds with its pool slot given back; a SIGKILL of everything (a power cut, a container
restart) gets the run marked failed by the next daemon's run monitoring within its poll, and
Dagster's run retries analyse its media anyway.

Slow (about three minutes): sensor ticks, the run queue, run monitoring and a process per run are
the daemon's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

from media_assets.plumbing.staleness import missing_by_partition
from media_assets.service.headless import instance_yaml
from media_assets.service.reanalyse import start_daemon, stop_daemon
from resources.workers import PID_TAG, RUN_TAG
from tests.conftest import TEST_CONFIG

TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _until(what: str, check: Callable[[], Any], daemon: Any, log: Path, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()[-3000:]
        found = check()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; daemon log: {log.read_text()[-3000:]}")


# Model steps that run early and for a while: a signal sent then lands well inside the run (one sent
# as its last step ends may find the run already done, which is no test of stopping it).
EARLY_MODEL_STEPS = {"transcript", "faces", "ocr_text", "poses"}


def _in_model_step(instance: DagsterInstance) -> Any:
    """A run whose worker has recorded itself and holds the gpu slot in an early model step."""
    claimed = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    holders = {s.run_id for s in claimed if s.step_key in EARLY_MODEL_STEPS}
    for run in instance.get_runs():
        if run.run_id in holders and run.status == DagsterRunStatus.STARTED and run.tags.get(RUN_TAG) == run.run_id:
            return run
    return None


def _drop(inbox: Path, src: Path) -> None:
    dest = inbox / src.name
    shutil.copyfile(src, dest)
    then = time.time() - 60
    os.utime(dest, (then, then))


@pytest.mark.slow
def test_run_workers_stopped_or_killed_under_the_daemon(samples: dict[str, Path], tmp_path: Path) -> None:
    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(dagster_home), MEDIALENS_CONFIG=str(TEST_CONFIG))
    log = tmp_path / "daemon.log"
    _drop(inbox, samples["talk.mp4"])
    daemon = start_daemon(log, env)
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            # SIGTERM (docker stop, systemd, kill): CANCELED within seconds, its slot free at once
            run = _until("a run in a model step", lambda: _in_model_step(instance), daemon, log)
            os.kill(int(run.tags[PID_TAG]), signal.SIGTERM)
            sent = time.monotonic()
            ended = _until(
                "the run to end",
                lambda: (r := instance.get_run_by_id(run.run_id)) is not None and r.status in TERMINAL and r,
                daemon,
                log,
                timeout=20,
            )
            assert time.monotonic() - sent < 10
            events = [(e.dagster_event_type, e.message[:120]) for e in instance.all_logs(run.run_id)]
            assert ended.status == DagsterRunStatus.CANCELED, (run.tags, events[-30:])
            info = instance.event_log_storage.get_concurrency_info("gpu")
            assert not info.claimed_slots and not info.pending_steps

            # A power cut / container restart: the daemon, its code server and the run worker are
            # SIGKILLed together. A new daemon's run monitoring finds the worker gone (the launcher's
            # health check), fails the run and frees its slot; Dagster's run retries re-execute it
            # from its failure, and the file is analysed.
            _drop(inbox, samples["astronaut.png"])
            run = _until(
                "the next run in a model step",
                lambda: (r := _in_model_step(instance)) is not None and r.run_id != ended.run_id and r,
                daemon,
                log,
            )
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            daemon = start_daemon(log, env)
            restarted_at = time.monotonic()
            failed = _until(
                "run monitoring to fail the killed run",
                lambda: (r := instance.get_run_by_id(run.run_id)) is not None and r.status in TERMINAL and r,
                daemon,
                log,
                timeout=120,
            )
            assert failed.status == DagsterRunStatus.FAILURE
            assert time.monotonic() - restarted_at < 90  # daemon start (~25 s) + a 15 s monitoring poll
            messages = [e.message for e in instance.all_logs(run.run_id)]
            assert any(f"pid {run.tags[PID_TAG]}" in m and "is gone" in m for m in messages), messages[-5:]
            retry = _until(
                "the retry to succeed",
                lambda: next(
                    (
                        r
                        for r in instance.get_runs()
                        if r.tags.get(PARENT_RUN_ID_TAG) == run.run_id and r.status == DagsterRunStatus.SUCCESS
                    ),
                    None,
                ),
                daemon,
                log,
            )
            assert retry is not None
            from media_assets.definitions import defs

            astronaut = next(k for k in instance.get_dynamic_partitions("media") if k.startswith("astronaut-"))
            assert missing_by_partition(instance, defs, [astronaut]).get(astronaut, set()) == set()
            info = instance.event_log_storage.get_concurrency_info("gpu")
            assert not info.claimed_slots and not info.pending_steps
    finally:
        stop_daemon(daemon)
