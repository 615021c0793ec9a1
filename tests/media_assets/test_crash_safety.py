"""Fault injection: `medialens analyse` killed (SIGKILL) or interrupted (SIGINT) at named points,
then run again, ends exactly like a clean run: same files in the store (no orphans), same tables,
same Qdrant point ids, nothing stale, the same people; never a wedged pool.

The points are `resources/faults.py`'s (MEDIALENS_FAULT): during the keyframe decode, inside a
model step (holding the `gpu` pool slot, the case that used to wedge every later run), during a
Qdrant write, between the run's event log and its index. `forget` has its own in test_forget.py,
the daemon path in tests/sensors/test_daemon_crash.py.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from media_assets.service.headless import instance_yaml
from tests.conftest import TEST_SETTINGS

MEDIALENS = Path(sys.executable).parent / "medialens"
FILES = ("talk.mp4", "astronaut.png")
# Written by the runs themselves, not results: reports of re-analyses, the per-process scratch area
SKIP_DIRS = {"reports", ".scratch"}


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600)


def _rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    for row in rows:
        for key in [k for k in row if k in ("seconds", "model_seconds")]:
            row.pop(key)  # timings, not results
    return rows


def snapshot(env: dict[str, str]) -> dict[str, Any]:
    """Everything a user can see of the library, in a comparable form."""
    home = Path(env["MEDIALENS_HOME"])
    store = home / "store"
    files = sorted(
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if p.is_file() and not SKIP_DIRS & set(p.relative_to(store).parts)
    )
    tables = {f: _rows(store / f) for f in files if f.endswith(".parquet")}
    from resources.edge_client import EdgeClient

    client = EdgeClient(home / "qdrant")
    try:
        points = {}
        for c in client.get_collections().collections:
            records, _ = client.scroll(c.name, limit=100_000, with_payload=True, with_vectors=False)
            points[c.name] = sorted((str(r.id), r.payload["partition"]) for r in records)
    finally:
        client.close()
    stale = ml(env, "stale", "--json")
    people = ml(env, "people", "--json")
    assert stale.returncode == 0 and people.returncode == 0, stale.stderr + people.stderr
    return {
        "files": files,
        "tables": tables,
        "points": points,
        "stale": json.loads(stale.stdout)["stale"],
        "people": json.loads(people.stdout)["persons"],
    }


@pytest.fixture(scope="module")
def media(samples: dict[str, Path]) -> list[str]:
    return [str(samples[name]) for name in FILES]


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fixed place for every case: tables and manifests hold absolute paths."""
    return tmp_path_factory.mktemp("crash")


def _env(place: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(place / "home"), DAGSTER_HOME=str(place / "dagster_home"), **extra)
    return env


def _fresh(place: Path) -> dict[str, str]:
    """An empty home and Dagster instance (created here, so that the test may open it while the
    CLI runs: two processes creating one sqlite instance at once race on its schema)."""
    for d in ("home", "dagster_home"):
        shutil.rmtree(place / d, ignore_errors=True)
    (place / "home").mkdir()
    (place / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    dagster_home = place / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    env = _env(place)
    with _instance(env):
        pass
    return env


@pytest.fixture(scope="module")
def clean(place: Path, media: list[str]) -> dict[str, Any]:
    """What one uninterrupted `analyse` of the files leaves."""
    env = _fresh(place)
    p = ml(env, "analyse", *media)
    assert p.returncode == 0, p.stderr
    snap = snapshot(env)
    assert snap["stale"] == [] and snap["points"]["text"] and snap["people"]
    return snap


def _instance(env: dict[str, str]) -> DagsterInstance:
    return DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))


def _runs(env: dict[str, str], backfills: bool = False) -> list[Any]:
    """The CLI's analysis runs, or the backfills' runs (of Dagster's implicit asset job)."""
    with _instance(env) as inst:
        return [r for r in inst.get_runs() if ("dagster/backfill" in r.tags) == backfills]


def _gpu_slots(env: dict[str, str]) -> tuple[list[str], list[str]]:
    with _instance(env) as inst:
        info = inst.event_log_storage.get_concurrency_info("gpu")
        return [s.run_id for s in info.claimed_slots], [p.run_id for p in info.pending_steps]


def assert_like_clean(env: dict[str, str], clean: dict[str, Any]) -> None:
    snap = snapshot(env)
    assert snap["stale"] == []
    assert snap["files"] == clean["files"], set(snap["files"]) ^ set(clean["files"])  # no orphans, none lost
    assert snap["points"] == clean["points"]  # same ids, none twice
    for name, rows in clean["tables"].items():
        assert snap["tables"][name] == rows, name
    assert snap["people"] == clean["people"]
    assert _gpu_slots(env) == ([], [])


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "keyframes:frame@3",  # half the JPEGs of a keyframe folder written
        "model:ocr_text",  # inside a model step, holding the gpu slot
        "qdrant:upsert",  # a partition's new points partly written
        "events:index@2",  # materialisations in the run's log, not in the index
    ],
)
def test_killed_then_run_again_ends_like_a_clean_run(
    fault: str, place: Path, media: list[str], clean: dict[str, Any]
) -> None:
    env = _fresh(place)
    killed = ml({**env, "MEDIALENS_FAULT": fault}, "analyse", *media)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    stuck = [r for r in _runs(env) if r.status == DagsterRunStatus.STARTED]
    assert stuck, "the killed run stays STARTED until something notices"

    again = ml(env, "analyse", *media)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"ended run {stuck[0].run_id} (FAILURE): worker pid" in again.stderr
    assert all(r.status != DagsterRunStatus.STARTED for r in _runs(env))
    assert_like_clean(env, clean)


@pytest.mark.slow
def test_ctrl_c_in_a_model_step_cancels_at_once_and_the_rerun_finishes(
    place: Path, media: list[str], clean: dict[str, Any]
) -> None:
    env = _fresh(place)
    proc = subprocess.Popen([str(MEDIALENS), "analyse", *media], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not _gpu_slots(env)[0]:  # a model step holds the gpu slot
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)  # within 10 s, or this raises
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    runs = _runs(env)
    assert [r.status for r in runs] == [DagsterRunStatus.CANCELED], (runs, took)
    assert _gpu_slots(env) == ([], [])

    again = ml(env, "analyse", *media)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_like_clean(env, clean)


@pytest.mark.slow
def test_ctrl_c_while_whisper_runs_in_the_background_exits_130(place: Path, tmp_path: Path) -> None:
    """The transcript runs in a background thread of the run (plumbing/ahead.py). Interrupted while
    that thread was inside CTranslate2, the process used to abort at exit ("terminate called without
    an active exception", exit 134) instead of ending the run CANCELED with exit 130."""
    from media_assets.service.samples import SPEECH, speak

    wav = speak(" ".join([SPEECH] * 12), tmp_path / "long.wav")  # minutes of speech: whisper is busy
    long = tmp_path / "long.mp3"
    encode = ["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "48k", str(long)]
    subprocess.run(encode, check=True)
    env = _fresh(place)
    proc = subprocess.Popen([str(MEDIALENS), "analyse", str(long)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not _gpu_slots(env)[0]:  # the transcript step holds the gpu slot, waiting for the thread
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err[-3000:]
    assert "terminate called" not in err
    assert [r.status for r in _runs(env)] == [DagsterRunStatus.CANCELED]
    again = ml(env, "analyse", str(long))
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_ctrl_c_during_a_qdrant_write_leaves_no_partial_partition(
    place: Path, media: list[str], clean: dict[str, Any]
) -> None:
    env = _fresh(place)
    stopped = ml({**env, "MEDIALENS_FAULT": "qdrant:upsert:sigint"}, "analyse", *media)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert [r.status for r in _runs(env)] == [DagsterRunStatus.CANCELED]
    # each partition has all of its points of that collection, or none of them
    partial = snapshot(env)["points"]
    for collection, points in partial.items():
        for key in {k for _, k in points}:
            have = sorted(p for p in points if p[1] == key)
            assert have == sorted(p for p in clean["points"][collection] if p[1] == key), (collection, key)
    again = ml(env, "analyse", *media)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_like_clean(env, clean)


@pytest.mark.slow
def test_ctrl_c_during_reanalyse_wait_cancels_the_backfill_and_its_runs(place: Path, samples: dict[str, Path]) -> None:
    env = _fresh(place)
    config = Path(env["MEDIALENS_HOME"]) / "medialens.yaml"
    videos = [str(samples[n]) for n in ("talk.mp4", "clip.webm", "street.mkv")]
    assert ml(env, "analyse", *videos).returncode == 0
    # OCR and faces (and what reads them) stale now: a backfill run of some seconds
    config.write_text(TEST_SETTINGS + "ocr_text: {det_limit_side_len: 640}\nfaces: {min_score: 0.61}\n")
    proc = subprocess.Popen(
        [str(MEDIALENS), "reanalyse", "--all-stale", "--wait"], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not any(r.status == DagsterRunStatus.STARTED for r in _runs(env, backfills=True)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)  # the run stops within 10 s; the daemon we started, too
    assert proc.returncode == 130, err
    assert "canceled backfill" in err
    backfill_runs = _runs(env, backfills=True)
    assert backfill_runs and all(r.status == DagsterRunStatus.CANCELED for r in backfill_runs), backfill_runs
    assert _gpu_slots(env) == ([], [])
    with _instance(env) as inst:
        (backfill,) = inst.get_backfills()
        assert backfill.status.value in ("CANCELING", "CANCELED")

    again = ml(env, "reanalyse", "--all-stale", "--wait")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(ml(env, "stale", "--json").stdout)["stale"] == []
