"""deploy/Dockerfile, built as CI builds it (`make deploy-test`): a Debian base made with
debootstrap, the image from exactly the tested wheels, on a Docker daemon of the test's own. The
image runs as a non-root user, has every model inside (no network at run time), reports healthy,
and analyses media in a container exactly as a local `medialens analyse` does."""

from __future__ import annotations

import difflib
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

from tests.deploy.docker_daemon import PrivateDocker

ROOT = Path(__file__).resolve().parents[2]
BASE = "local/debian:bookworm"
IMAGE = "medialens:deploy-test"
MEDIA = ("talk.mp4", "speech.mp3", "astronaut.png")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MEDIALENS_DEPLOY_TEST") != "1",
        reason="builds a base and the image on a private dockerd (minutes): `make deploy-test`",
    ),
]


def timed(stage: str, started: float) -> None:
    print(f"deploy-test: {stage} in {time.monotonic() - started:.0f} s", flush=True)


@pytest.fixture(scope="module")
def docker() -> Iterator[PrivateDocker]:
    """A private dockerd with the base and the image built on it (each stage's time printed)."""
    daemon = PrivateDocker(Path(os.environ.get("MEDIALENS_DEPLOY_TEST_ROOT", "/var/tmp/medialens-deploy-test")))
    started = time.monotonic()
    daemon.start()
    try:
        timed("private dockerd up", started)
        started = time.monotonic()
        rootfs = daemon.root / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
        boot = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert boot.returncode == 0, boot.stdout[-2000:] + boot.stderr[-2000:]
        daemon.import_rootfs(rootfs, BASE)
        shutil.rmtree(rootfs, ignore_errors=True)
        timed(f"base image {BASE} (debootstrap)", started)
        started = time.monotonic()
        env = {**daemon.env, "BASE_IMAGE": BASE, "DOCKER": daemon.docker_cli}
        build = subprocess.run(
            ["bash", "deploy/build-image.sh", IMAGE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        timed(f"image {IMAGE} ({build.stdout.strip().splitlines()[-1]})", started)
        yield daemon
    finally:
        daemon.stop(keep_data=os.environ.get("MEDIALENS_DEPLOY_KEEP") == "1")


def run(docker: PrivateDocker, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` of the image with no network at all: nothing may be downloaded at run time."""
    return docker.docker("run", "--rm", "--network", "none", *args, check=False, timeout=timeout)


def test_the_image_runs_as_a_non_root_user_with_its_models_inside(docker: PrivateDocker) -> None:
    # a single container on sqlite (the image's own DAGSTER_HOME is the stack's Postgres config)
    p = run(docker, "-e", "DAGSTER_HOME=/data/dagster_home", IMAGE, "sh", "-c", "id -un; medialens health --json")
    assert p.returncode == 0, p.stderr
    user, health = p.stdout.split("\n", 1)
    assert user == "medialens"
    checks = {c["name"]: c for c in json.loads(health)["checks"]}
    assert checks["models"]["status"] == "ok", checks["models"]


def analysed(results: str) -> dict[str, str]:
    out = json.loads(results)["results"]
    assert [r["status"] for r in out] == ["ok"] * len(MEDIA), out
    return {r["source_name"]: r["key"] for r in out}


def essentials(show: dict[str, Any]) -> dict[str, Any]:
    """What must be equal wherever the same files are analysed: what was found, not paths or times."""
    return {
        "kind": show["kind"],
        "keyframes": len(show["keyframes"] or []),
        "ocr": sorted(line["text"] for line in (show["ocr"] or {}).get("lines", [])),
        "faces": len(show["faces"] or []),
        "pose_points": sorted(len(p["keypoints"]) for f in show["poses"] or [] for p in f["persons"]),
        "language": (show["transcript"] or {}).get("language"),
    }


def test_media_analysed_in_a_container_equal_a_local_analysis(
    docker: PrivateDocker, samples: dict[str, Path], tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for name in MEDIA:
        shutil.copy(samples[name], media / name)
    media.chmod(0o755)
    started = time.monotonic()
    volume = ["-v", "deploy-test-data:/data", "-e", "DAGSTER_HOME=/data/dagster_home"]
    inside = run(docker, *volume, "-v", f"{media}:/media:ro", IMAGE, "medialens", "analyse",
                 *(f"/media/{n}" for n in MEDIA), "--json")  # fmt: skip
    assert inside.returncode == 0, inside.stderr[-3000:]
    keys = analysed(inside.stdout)
    shows_inside = {}
    for name, key in keys.items():
        p = run(docker, *volume, IMAGE, "medialens", "show", key, "--json")
        assert p.returncode == 0, p.stderr
        shows_inside[name] = json.loads(p.stdout)
    timed("3 media analysed in a container", started)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_", "REDIS_"))}
    env.update(MEDIALENS_HOME=str(tmp_path / "local"), DAGSTER_HOME=str(tmp_path / "local" / "dagster_home"))
    medialens = str(Path(sys.executable).parent / "medialens")
    local = subprocess.run([medialens, "analyse", *(str(media / n) for n in MEDIA), "--json"],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    assert analysed(local.stdout) == keys  # the same content hashes, so the same partition keys
    for name, key in keys.items():
        p = subprocess.run([medialens, "show", key, "--json"], env=env, capture_output=True, text=True, timeout=120)
        there, here = shows_inside[name], json.loads(p.stdout)
        assert essentials(there) == essentials(here), name
        # whisper's temperature fallback samples: equally right text may differ in a word
        if here["transcript"] and here["transcript"]["text"]:
            ratio = difflib.SequenceMatcher(None, there["transcript"]["text"], here["transcript"]["text"]).ratio()
            assert ratio > 0.9, (there["transcript"]["text"], here["transcript"]["text"])
    assert essentials(shows_inside["talk.mp4"])["ocr"] and shows_inside["speech.mp3"]["transcript"]["text"]
    assert essentials(shows_inside["astronaut.png"])["faces"] >= 1


def test_a_container_reports_healthy(docker: PrivateDocker) -> None:
    name = "deploy-test-health"
    often = ["--health-interval", "2s", "--health-start-period", "0s"]
    sqlite = ["-e", "DAGSTER_HOME=/data/dagster_home"]
    docker.docker("run", "-d", "--name", name, "--network", "none", *often, *sqlite, IMAGE, "sleep", "600")
    try:
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline:
            status = docker.docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(1)
        assert status == "healthy", docker.docker("inspect", name).stdout[-3000:]
    finally:
        docker.docker("rm", "-f", name, check=False)
