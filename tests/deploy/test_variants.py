"""What can be checked of the deploy files without building anything: the CUDA variant's
constraints (no GPU and no multi-GB CUDA wheels here), the Dockerfile's build arguments, and
compose.yaml as Compose reads it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check_variant(variant: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VARIANT": variant}
    return subprocess.run(["bash", "deploy/build-image.sh", "--check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_the_cpu_variant_is_the_tested_set() -> None:
    p = check_variant("cpu")
    assert p.returncode == 0, p.stderr
    assert (ROOT / "deploy/build/cpu/constraints.txt").read_text() == (ROOT / "constraints.txt").read_text()


def test_the_cuda_variant_swaps_only_the_gpu_builds() -> None:
    p = check_variant("cuda")
    assert p.returncode == 0, p.stderr
    tested, cuda = pins(ROOT / "constraints.txt"), pins(ROOT / "deploy/build/cuda/constraints.txt")
    changed = {name for name in tested.keys() | cuda.keys() if tested.get(name) != cuda.get(name)}
    assert changed == {"torch", "onnxruntime-gpu"}, changed
    assert tested["torch"] == cuda["torch"] + "+cpu"  # the same PyTorch version, its CUDA build
    assert cuda["onnxruntime-gpu"] == cuda["onnxruntime"] == tested["onnxruntime"]


def test_an_unknown_variant_is_refused() -> None:
    p = check_variant("rocm")
    assert p.returncode == 2 and "VARIANT=rocm: expected cpu or cuda" in p.stderr


def test_the_dockerfile_builds_either_variant_from_its_own_wheels() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text
    assert "COPY deploy/build/${VARIANT}/wheels /wheels" in text
    assert "COPY deploy/build/${VARIANT}/constraints.txt /src/" in text
    assert re.search(r'if \[ "\$VARIANT" = cuda \]; then.*onnxruntime-gpu', text, re.S)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"!deploy/build/cpu", "!deploy/build/cuda"} <= set(ignored)


def required_variables(compose: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+):\?", compose))


def test_every_required_variable_is_in_the_env_example() -> None:
    compose = (ROOT / "deploy/compose.yaml").read_text()
    example = {line.split("=")[0].lstrip("#") for line in (ROOT / "deploy/env.example").read_text().splitlines()}
    assert required_variables(compose) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    assert required_variables(compose) <= example


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed (make deploy-test installs it)"
)
def test_compose_reads_the_stack(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=a\nREDIS_PASSWORD=b\nMEDIALENS_PROXY_TOKEN=0123456789abcdef\n")
    base = ["docker-compose", "-f", str(ROOT / "deploy/compose.yaml"), "--env-file", str(env)]
    p = subprocess.run([*base, "config"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    services = subprocess.run([*base, "config", "--services"], capture_output=True, text=True, timeout=60)
    stack = {"postgres", "redis", "codeserver", "webserver", "daemon", "results", "proxy"}
    assert set(services.stdout.split()) == stack | {"qdrant"}  # qdrant: only with its profile
    env.write_text("REDIS_PASSWORD=b\n")  # no Postgres password: compose says so and starts nothing
    p = subprocess.run([*base, "config"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "set POSTGRES_PASSWORD in deploy/.env" in p.stderr
