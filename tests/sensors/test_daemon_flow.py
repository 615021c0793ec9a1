"""The drop-a-file flow under a real `dagster-daemon`: the upload sensor batches the new files into
one range run, a bad file fails in it, and failed_batch_sensor runs the others on.

Slow (about two minutes): sensor ticks, the run queue and a process per run are the daemon's own.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from media_assets.plumbing.staleness import find_stale
from media_assets.service.headless import instance_yaml
from media_assets.service.reanalyse import start_daemon, stop_daemon
from sensors.failed_batch import SPLIT_FROM_TAG
from tests.conftest import TEST_CONFIG

TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.mark.slow
def test_dropped_files_are_analysed_together_and_a_bad_one_fails_alone(
    samples: dict[str, Path], bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    dropped = [samples["astronaut.png"], samples["chelsea.webp"], bad_inputs["truncated_mkv"], samples["messi5.jpg"]]
    now = time.time() - 60
    for i, src in enumerate(dropped):  # oldest first is the order the sensor takes them in
        dest = inbox / src.name
        shutil.copyfile(src, dest)
        os.utime(dest, (now + i, now + i))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(dagster_home), MEDIALENS_CONFIG=str(TEST_CONFIG))
    daemon = start_daemon(tmp_path / "daemon.log", env)
    runs = []
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            deadline = time.monotonic() + 480
            while time.monotonic() < deadline:
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                runs = [r for r in instance.get_runs() if r.job_name == "analyse_media"]
                split = [r for r in runs if SPLIT_FROM_TAG in r.tags]
                if split and all(r.status in TERMINAL for r in runs):
                    break
                time.sleep(3)
            else:
                pytest.fail(f"no split runs finished: {[(r.tags, r.status) for r in runs]}")

            first = [r for r in runs if SPLIT_FROM_TAG not in r.tags]
            assert len(first) == 1 and first[0].tags["medialens/files"] == "4"  # one run for the drop
            assert first[0].status == DagsterRunStatus.FAILURE
            split = [r for r in runs if SPLIT_FROM_TAG in r.tags]
            assert split and all(r.status == DagsterRunStatus.SUCCESS for r in split), [r.tags for r in split]
            assert all(r.tags[SPLIT_FROM_TAG] == first[0].run_id for r in split)

            from media_assets.definitions import defs

            keys = list(instance.get_dynamic_partitions("media"))
            assert len(keys) == 4 and keys[2].startswith("truncated-")
            lacking: dict[str, set[str]] = {}
            for s in find_stale(instance, defs):
                lacking.setdefault(s.partition, set()).add(s.asset)
            assert set(lacking) == {keys[2]}, lacking  # every good file complete, the bad one failed alone
    finally:
        stop_daemon(daemon)
    assert not [p for p in inbox.iterdir() if p.is_file()]  # the inbox drained into the store
