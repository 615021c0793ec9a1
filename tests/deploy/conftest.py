"""What the deploy tests share: a private dockerd with the base and the image built on it once per
session (`make deploy-test`), and a local analysis of the same media to compare containers with."""

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
DEPLOY_TEST = os.environ.get("MEDIALENS_DEPLOY_TEST") == "1"


def timed(stage: str, started: float) -> None:
    print(f"deploy-test: {stage} in {time.monotonic() - started:.0f} s", flush=True)


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def media(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding MEDIA, readable by the image's user."""
    folder = tmp_path_factory.mktemp("deploy-media")
    for name in MEDIA:
        shutil.copy(samples[name], folder / name)
    folder.chmod(0o755)
    return folder


def analysed(results: str) -> dict[str, str]:
    """`analyse --json` output as {source name: partition key}, every file analysed."""
    out = json.loads(results)["results"]
    assert [r["status"] for r in out] == ["ok"] * len(MEDIA), out
    return {r["source_name"]: r["key"] for r in out}


@pytest.fixture(scope="session")
def local_shows(media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """`medialens show --json` of MEDIA analysed here by `medialens analyse`, by source name."""
    home = tmp_path_factory.mktemp("deploy-local")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_", "REDIS_"))}
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
    medialens = str(Path(sys.executable).parent / "medialens")
    local = subprocess.run([medialens, "analyse", *(str(media / n) for n in MEDIA), "--json"],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    shows = {}
    for name, key in analysed(local.stdout).items():
        p = subprocess.run([medialens, "show", key, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        shows[name] = json.loads(p.stdout)
    return shows


def essentials(show: dict[str, Any]) -> dict[str, Any]:
    """What must be equal wherever the same files are analysed: what was found, not paths or times."""
    return {
        "key": show["key"],
        "kind": show["kind"],
        "keyframes": len(show["keyframes"] or []),
        "ocr": sorted(line["text"] for line in (show["ocr"] or {}).get("lines", [])),
        "faces": len(show["faces"] or []),
        "pose_points": sorted(len(p["keypoints"]) for f in show["poses"] or [] for p in f["persons"]),
        "language": (show["transcript"] or {}).get("language"),
    }


def assert_same_analysis(there: dict[str, dict[str, Any]], here: dict[str, dict[str, Any]]) -> None:
    """Shows of the same media from two places found the same things; whisper's temperature
    fallback samples, so equally right transcripts may differ in a word."""
    assert there.keys() == here.keys()
    for name in here:
        assert essentials(there[name]) == essentials(here[name]), name
        a, b = (there[name]["transcript"] or {}).get("text"), (here[name]["transcript"] or {}).get("text")
        if b:
            assert a and difflib.SequenceMatcher(None, a, b).ratio() > 0.9, (a, b)
    assert essentials(there["talk.mp4"])["ocr"] and there["speech.mp3"]["transcript"]["text"]
    assert essentials(there["astronaut.png"])["faces"] >= 1
