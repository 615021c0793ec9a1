"""deploy/Dockerfile, built as CI builds it (`make deploy-test`): a Debian base made with
debootstrap, the image from exactly the tested wheels, on a Docker daemon of the test's own. The
image runs as a non-root user, has every model inside (no network at run time), reports healthy,
and analyses media in a container exactly as a local `medialens analyse` does."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY_TEST, IMAGE, MEDIA, analysed, assert_same_analysis, timed
from tests.deploy.docker_daemon import PrivateDocker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEPLOY_TEST, reason="builds a base and an image on a private dockerd: `make deploy-test`"),
]


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


def test_media_analysed_in_a_container_equal_a_local_analysis(
    docker: PrivateDocker, media: Path, local_shows: dict[str, dict[str, Any]]
) -> None:
    started = time.monotonic()
    volume = ["-v", "deploy-test-data:/data", "-e", "DAGSTER_HOME=/data/dagster_home"]
    inside = run(docker, *volume, "-v", f"{media}:/media:ro", IMAGE, "medialens", "analyse",
                 *(f"/media/{n}" for n in MEDIA), "--json")  # fmt: skip
    assert inside.returncode == 0, inside.stderr[-3000:]
    shows_inside = {}
    for name, key in analysed(inside.stdout).items():
        p = run(docker, *volume, IMAGE, "medialens", "show", key, "--json")
        assert p.returncode == 0, p.stderr
        shows_inside[name] = json.loads(p.stdout)
    timed("3 media analysed in a container", started)
    assert_same_analysis(shows_inside, local_shows)  # the same keys (content hashes) and findings


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
