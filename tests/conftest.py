"""Shared fixtures: generated sample media (once per session) and an isolated medialens home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test

from media_assets.plumbing.config import Paths
from media_assets.service.headless import storage_config
from media_assets.service.samples import generate_bad_inputs, generate_samples
from resources import build_resources, inference_cache
from tests.redis_server import REDIS_SERVER, RedisServer

# Read before any asset module computes its settings (they are read once per process, at import).
TEST_CONFIG = Path(__file__).parent / "medialens-test.yaml"
TEST_SETTINGS = TEST_CONFIG.read_text()
os.environ["MEDIALENS_CONFIG"] = str(TEST_CONFIG)


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo media set by file name (talk.mp4, street.mkv, speech.mp3, astronaut.png, ...)."""
    out = tmp_path_factory.mktemp("samples")
    return {p.name: p for p in generate_samples(out)}


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """A fresh MEDIALENS_HOME layout under tmp_path."""
    env = {"MEDIALENS_HOME": str(tmp_path / "home")}
    p = Paths.from_env(env)
    p.inbox.mkdir(parents=True)
    return p


@pytest.fixture
def resources(paths: Paths) -> dict[str, object]:
    return build_resources(paths, env={})


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance with the storage medialens configures (batched asset events)."""
    home = tmp_path / "dagster_instance"
    home.mkdir()
    with instance_for_test(temp_dir=str(home), overrides={"storage": storage_config(home)}) as inst:
        yield inst


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the real `medialens` entry point against an isolated home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "dagster_home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    return env


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for this test, with the inference cache's per-process state reset."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis").start()
    inference_cache.reset_for_tests()
    try:
        yield server
    finally:
        server.kill()
        inference_cache.reset_for_tests()
