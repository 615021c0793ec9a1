"""`medialens health`: the real entry point on a home where media were analysed, then broken on copies.

The home is analysed once for the module (one video, one image, one audio); every break happens on a
copy (of the home, of the model files), never on the installed package's files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media_assets.plumbing.config import Paths
from media_assets.service import health
from tests.conftest import TEST_SETTINGS
from tests.redis_server import free_port

MEDIALENS = Path(sys.executable).parent / "medialens"
NAMES = ["dagster instance", "daemon", "sensors", "redis", "qdrant", "models", "disk", "gpu"]


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600)


def health_json(env: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, dict[str, str]]]:
    p = ml(env, "health", "--json")
    doc = json.loads(p.stdout)  # exactly one JSON document on stdout
    return p.returncode, doc, {c["name"]: c for c in doc["checks"]}


def base_env(root: Path) -> dict[str, str]:
    """What tests/conftest.py's cli_env makes, for a module-scoped home (and without Redis)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_", "REDIS_"))}
    env.update(MEDIALENS_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster_home"))
    (root / "home").mkdir(parents=True, exist_ok=True)
    (root / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    return env


@pytest.fixture(scope="module")
def analysed(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home where one video, one image and one audio file were analysed through the CLI."""
    root = tmp_path_factory.mktemp("health")
    env = base_env(root)
    files = [samples["clip.webm"], samples["astronaut.png"], samples["speech.mp3"]]
    p = ml(env, "analyse", *map(str, files), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    keys = [r["key"] for r in json.loads(p.stdout)["results"]]
    return {"env": env, "root": root, "keys": keys}


def copy_home(analysed: dict[str, Any], dest: Path, with_qdrant: bool = True) -> dict[str, str]:
    """The analysed home copied to `dest` (the Dagster instance stays shared: health only reads it)."""
    src = Path(analysed["env"]["MEDIALENS_HOME"])
    ignore = None if with_qdrant else shutil.ignore_patterns("qdrant")
    shutil.copytree(src, dest, ignore=ignore)
    return {**analysed["env"], "MEDIALENS_HOME": str(dest)}


@pytest.mark.slow
def test_analysed_home_is_healthy(analysed: dict[str, Any]) -> None:
    started = time.perf_counter()
    rc, doc, checks = health_json(analysed["env"])
    took = time.perf_counter() - started
    assert rc == 0, doc
    assert set(doc) == {"ok", "checks"} and doc["ok"] is True
    assert [c["name"] for c in doc["checks"]] == NAMES
    assert all(set(c) == {"name", "status", "reason"} and c["reason"] for c in doc["checks"])
    # everything ok (a busy machine's disk may warn)
    assert all(c["status"] == "ok" for c in doc["checks"] if c["name"] != "disk"), doc
    assert (
        "sqlite" in checks["dagster instance"]["reason"]
        and "3 media partitions" in checks["dagster instance"]["reason"]
    )
    assert checks["daemon"]["status"] == "ok" and "none expected" in checks["daemon"]["reason"]
    assert "media_upload_sensor" in checks["sensors"]["reason"]
    assert checks["redis"] == {"name": "redis", "status": "ok", "reason": checks["redis"]["reason"]}
    assert "not configured" in checks["redis"]["reason"]
    assert checks["qdrant"]["status"] == "ok" and "match" in checks["qdrant"]["reason"], checks["qdrant"]
    assert "text " in checks["qdrant"]["reason"] and "faces " in checks["qdrant"]["reason"]
    assert checks["models"]["status"] == "ok" and "known sha256" in checks["models"]["reason"]
    assert checks["gpu"]["reason"].split(":")[0] in {"cpu", "cuda"} and "transcript=" in checks["gpu"]["reason"]
    assert took < 60, took  # a few seconds when the machine is not shared; no model is loaded
    # the hashes are cached (by path, size and mtime) under the home
    assert (Path(analysed["env"]["MEDIALENS_HOME"]) / ".health" / "model-sha256.json").exists()

    # human output: a table of status, name and reason; still exit 0 with warnings only
    p = ml(analysed["env"], "health")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["status", "check", "reason"]
    assert any(line.startswith("ok") and "qdrant" in line for line in lines)
    assert any(line.startswith("ok") and "daemon" in line for line in lines)


@pytest.fixture(scope="module")
def broken(analysed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run with Redis configured on a closed port and a truncated COPY of a model file."""
    from resources.model_files import models_dir

    models = tmp_path_factory.mktemp("models")
    shutil.copytree(models_dir() / "mediapipe", models / "mediapipe")
    victim = models / "mediapipe" / "pose_detection.tflite"
    size = victim.stat().st_size
    with victim.open("r+b") as fh:
        fh.truncate(size // 2)
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {**analysed["env"], "REDIS_URL": url, "MEDIALENS_MODELS": str(models)}
    rc, doc, checks = health_json(env)
    return {"rc": rc, "doc": doc, "checks": checks, "url": url, "victim": victim, "env": env}


@pytest.mark.slow
def test_redis_on_a_closed_port_fails(broken: dict[str, Any]) -> None:
    assert broken["rc"] == 1 and broken["doc"]["ok"] is False
    redis = broken["checks"]["redis"]
    assert redis["status"] == "fail"
    assert broken["url"] in redis["reason"] and "refused" in redis["reason"].lower(), redis


@pytest.mark.slow
def test_truncated_model_file_fails_naming_it(broken: dict[str, Any]) -> None:
    models = broken["checks"]["models"]
    assert models["status"] == "fail", models
    assert str(broken["victim"]) in models["reason"] and "truncated" in models["reason"]
    # only the broken file is named; the installed package's file is untouched
    assert "pose_landmark_full" not in models["reason"]
    from resources.model_files import models_dir

    installed = models_dir() / "mediapipe" / "pose_detection.tflite"
    assert installed.stat().st_size == health.KNOWN_FILES["mediapipe/pose_detection.tflite"][0]
    # the other checks are unaffected
    assert broken["checks"]["qdrant"]["status"] == "ok"


@pytest.mark.slow
def test_repaired_model_file_is_hashed_again(broken: dict[str, Any]) -> None:
    """The cache is keyed by size and mtime: after a repair the file is hashed again and passes."""
    from resources.model_files import models_dir

    shutil.copyfile(models_dir() / "mediapipe" / "pose_detection.tflite", broken["victim"])
    env = {k: v for k, v in broken["env"].items() if k != "REDIS_URL"}
    rc, doc, checks = health_json(env)
    assert checks["models"]["status"] == "ok", checks["models"]
    assert rc == 0, doc


@pytest.mark.slow
def test_removed_qdrant_folder_fails(analysed: dict[str, Any], tmp_path: Path) -> None:
    env = copy_home(analysed, tmp_path / "home", with_qdrant=False)
    rc, doc, checks = health_json(env)
    assert rc == 1 and doc["ok"] is False
    q = checks["qdrant"]
    assert q["status"] == "fail" and "does not exist" in q["reason"] and "of 3 media" in q["reason"], q
    assert {c["status"] for n, c in checks.items() if n != "qdrant"} <= {"ok", "warn"}


@pytest.mark.slow
def test_qdrant_count_mismatch_names_collection_and_partition(analysed: dict[str, Any], tmp_path: Path) -> None:
    from resources.qdrant import QdrantResource

    env = copy_home(analysed, tmp_path / "home")
    qdrant = QdrantResource(path=str(tmp_path / "home" / "qdrant"))
    video = analysed["keys"][0]
    before = qdrant.count("text", partition=video)
    assert before > 0
    assert qdrant.delete_partition(video, "text") == before
    rc, _doc, checks = health_json(env)
    q = checks["qdrant"]
    assert rc == 1 and q["status"] == "fail", q
    assert "'text'" in q["reason"] and video in q["reason"] and f"{video} expected {before}, found 0" in q["reason"], q

    # another process holding the embedded lock: a warning naming it, not a failure
    with qdrant.client():
        rc, _doc, checks = health_json(env)
    q = checks["qdrant"]
    assert q["status"] == "warn" and f"pid {os.getpid()}" in q["reason"], q


# ------------------------------------------------------------------------------ in-process checks


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Paths]:
    paths = Paths.from_env({"MEDIALENS_HOME": str(tmp_path / "home")})
    paths.home.mkdir(parents=True)
    yield paths


def by_name(checks: list[health.Check]) -> dict[str, health.Check]:
    return {c.name: c for c in checks}


def test_fresh_home_is_healthy_and_creates_no_qdrant(home: Paths, instance: Any) -> None:
    checks = by_name(health.run_checks(home, env={}, instance=instance, models=[]))
    assert list(checks) == NAMES
    assert checks["qdrant"].status == "ok" and "nothing analysed" in checks["qdrant"].reason
    assert not home.qdrant.exists()
    assert checks["daemon"].status == "ok" and "none expected" in checks["daemon"].reason
    assert all(c.status == "ok" for n, c in checks.items() if n != "disk"), checks


def test_daemon_expected_but_stale_fails(home: Paths, instance: Any) -> None:
    from dagster._daemon.types import DaemonHeartbeat

    checks = by_name(health.run_checks(home, env={"MEDIALENS_EXPECT_DAEMON": "1"}, instance=instance, models=[]))
    assert checks["daemon"].status == "fail" and "MEDIALENS_EXPECT_DAEMON=1" in checks["daemon"].reason

    now = time.time()
    for t in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(now, t, "test", errors=[]))
    checks = by_name(health.run_checks(home, env={}, instance=instance, models=[]))
    assert checks["daemon"].status == "ok", checks["daemon"]

    for t in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(now - 600, t, "test", errors=[]))
    checks = by_name(health.run_checks(home, env={}, instance=instance, models=[]))
    assert checks["daemon"].status == "fail" and "min ago" in checks["daemon"].reason, checks["daemon"]
    checks = by_name(health.run_checks(home, env={"MEDIALENS_EXPECT_DAEMON": "0"}, instance=instance, models=[]))
    assert checks["daemon"].status == "ok"


def test_cuda_asked_without_gpu_fails(home: Paths) -> None:
    if health._nvidia_visible():
        pytest.skip("a GPU driver is present here")
    assert health.check_gpu({"MEDIALENS_DEVICE": "cuda"}).status == "fail"
    ok = health.check_gpu({"MEDIALENS_DEVICE": "auto"})
    assert ok.status == "ok" and ok.reason.startswith("cpu: ") and "MEDIALENS_DEVICE=auto" in ok.reason
    assert "transcript=cpu" in ok.reason and "ocr=cpu" in ok.reason
    assert health.check_gpu({"MEDIALENS_DEVICE": "tpu"}).status == "fail"


def test_disk_thresholds_from_env(home: Paths) -> None:
    assert health.check_disk(home, {}).status in {"ok", "warn"}
    assert health.check_disk(home, {"MEDIALENS_HEALTH_DISK_FAIL_GB": "1e9"}).status == "fail"
    warn = health.check_disk(home, {"MEDIALENS_HEALTH_DISK_WARN_GB": "1e9", "MEDIALENS_HEALTH_DISK_FAIL_GB": "0"})
    assert warn.status == "warn" and "GiB free" in warn.reason


def test_a_crashing_or_hanging_check_is_a_failure_not_a_crash() -> None:
    def boom() -> health.Check:
        raise RuntimeError("storage exploded")

    c = health._guarded("x", boom, 5)
    assert c == health.Check("x", "fail", "RuntimeError: storage exploded")

    def slow() -> health.Check:
        time.sleep(5)
        return health.Check("slow", "ok", "")

    c = health._guarded("slow", slow, 0.2)
    assert c.status == "fail" and "no answer within 0.2 s" in c.reason


def test_models_hash_cache_catches_truncation(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    digest = __import__("hashlib").sha256(b"x" * 1000).hexdigest()
    files = [health.ModelFile("tags", f, (1000, digest))]
    cache_file = tmp_path / "cache.json"
    assert health.check_models(files, health.HashCache(cache_file)).status == "ok"
    assert json.loads(cache_file.read_text())[str(f)]["sha256"] == digest
    with f.open("r+b") as fh:
        fh.truncate(10)
    bad = health.check_models(files, health.HashCache(cache_file))
    assert bad.status == "fail" and str(f) in bad.reason and "truncated" in bad.reason
    missing = health.check_models([health.ModelFile("ocr", tmp_path / "gone.onnx")], health.HashCache(None))
    assert missing.status == "fail" and "gone.onnx is missing" in missing.reason


def test_sensor_defaults_match_the_code_location() -> None:
    from dagster import DefaultSensorStatus

    from sensors.failed_batch import failed_batch_sensor
    from sensors.stale_model import stale_model_sensor
    from sensors.upload import media_upload_sensor

    code = {
        s.name: s.default_status == DefaultSensorStatus.RUNNING
        for s in (media_upload_sensor, failed_batch_sensor, stale_model_sensor)
    }
    assert code == health.SENSORS


def test_unreachable_instance_fails_once_and_says_postgres(
    home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: postgresql://u:p@127.0.0.1:1/medialens\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    checks = by_name(health.run_checks(home, env={}, models=[]))
    assert checks["dagster instance"].status == "fail"
    assert (
        "postgres storage" in checks["dagster instance"].reason and "unreachable" in checks["dagster instance"].reason
    )
    for name in ("daemon", "sensors"):
        assert checks[name].status == "fail" and checks[name].reason.startswith("not checked"), checks[name]
    assert checks["redis"].status == "ok"  # the other checks go on


def test_sensor_states_decide_ok_or_warn(home: Paths) -> None:
    from types import SimpleNamespace

    from dagster._core.scheduler.instigation import InstigatorStatus

    class FakeInstance:
        def __init__(self, states: dict[str, InstigatorStatus]) -> None:
            self.states = [
                SimpleNamespace(instigator_name=n, status=s, instigator_origin_id=n, selector_id=n)
                for n, s in states.items()
            ]

        def all_instigator_state(self, instigator_type: Any = None) -> list[Any]:
            return self.states

        def get_ticks(self, origin_id: str, selector_id: str, limit: int | None = None) -> list[Any]:
            return [SimpleNamespace(timestamp=time.time() - 20)] if origin_id == "media_upload_sensor" else []

    ok = health.check_sensors(health._Instance(home, FakeInstance({"media_upload_sensor": InstigatorStatus.RUNNING})))
    assert (
        ok.status == "ok"
        and "media_upload_sensor, failed_batch_sensor" in ok.reason
        and "last tick 20 s ago" in ok.reason
    )
    stopped = health.check_sensors(
        health._Instance(
            home,
            FakeInstance(
                {"media_upload_sensor": InstigatorStatus.STOPPED, "stale_model_sensor": InstigatorStatus.RUNNING}
            ),
        )
    )
    assert stopped.status == "warn" and stopped.reason.startswith("stopped: media_upload_sensor"), stopped
    assert "stale_model_sensor" in stopped.reason.split("running: ")[1]
