"""The stack's run launcher: which runs get GPUs, and deploy/stack/dagster.yaml loading it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, asset, define_asset_job
from dagster._core.instance.ref import InstanceRef

from media_assets.plumbing.docker_launcher import MediaLensDockerRunLauncher, gpu_request, runs_model_steps
from tests.postgres_server import PostgresServer, postgres_or_skip

ROOT = Path(__file__).resolve().parents[3]
ALL_GPUS = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


@pytest.mark.parametrize(
    ("gpus", "device", "nvidia", "expected"),
    [
        ("auto", "auto", True, ALL_GPUS),  # a GPU host: no setting needed
        ("auto", "auto", False, None),  # a CPU host with the same .env: no request, models on CPU
        ("auto", "cuda", False, ALL_GPUS),  # cuda asked for: Docker says clearly there is no GPU
        ("auto", "cpu", True, None),
        ("all", "auto", False, ALL_GPUS),
        ("none", "cuda", True, None),
        ("", "auto", True, ALL_GPUS),
        ("0,2", "auto", False, {"driver": "nvidia", "device_ids": ["0", "2"], "capabilities": [["gpu"]]}),
    ],
)
def test_gpu_request(gpus: str, device: str, nvidia: bool, expected: object) -> None:
    assert gpu_request(gpus, device, nvidia) == expected


def test_a_bad_gpus_setting_names_itself() -> None:
    with pytest.raises(ValueError, match="MEDIALENS_GPUS='first'"):
        gpu_request("first", "auto", True)


def test_only_runs_with_a_model_step_ask_for_gpus() -> None:
    assert runs_model_steps([None, "gpu", None])
    assert runs_model_steps(["hostA-faces"])
    assert not runs_model_steps([None, None])
    assert not runs_model_steps([])


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = postgres_or_skip()
    yield server
    server.stop()


def test_the_stack_instance_launches_runs_in_containers(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/stack/dagster.yaml as the image holds it: every value from the environment."""
    home = tmp_path / "stack"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        (ROOT / "deploy" / "stack" / "dagster.yaml").read_text().replace("port: 5432", f"port: {pg.port}")
    )
    pg.create_db("stack")
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "x",
        "DAGSTER_PG_DB": "stack", "MEDIALENS_IMAGE": "medialens:test", "MEDIALENS_NETWORK": "medialens",
        "MEDIALENS_GPUS": "0",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, MediaLensDockerRunLauncher)
        assert (launcher.image, launcher.networks, launcher.gpus) == ("medialens:test", ["medialens"], "0")
        assert launcher.container_kwargs["volumes"] == ["medialens-data:/data"]
        assert "DAGSTER_HOME" in launcher.env_vars and "REDIS_URL" in launcher.env_vars
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2


def test_a_run_with_a_model_step_gets_the_gpus_and_others_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision from the run's own execution plan: a step in a pool is a model step."""

    @asset(pool="gpu-faces")
    def modelled() -> None: ...

    @asset
    def plain() -> None: ...

    defs = Definitions(
        assets=[modelled, plain],
        jobs=[define_asset_job("with_model"), define_asset_job("without_model", selection=["plain"])],
    )
    monkeypatch.setenv("MEDIALENS_DEVICE", "auto")
    with DagsterInstance.ephemeral() as instance:
        launcher = MediaLensDockerRunLauncher(image="medialens:test", gpus="auto")
        launcher.register_instance(instance)
        launcher._nvidia = True  # a Docker host with NVIDIA's runtime, without asking a daemon
        kwargs = {}
        for name in ("with_model", "without_model"):
            run = defs.resolve_job_def(name).execute_in_process(instance=instance).dagster_run
            kwargs[name] = launcher.get_container_context(run).container_kwargs
        assert kwargs["with_model"]["device_requests"] == [ALL_GPUS]
        assert "device_requests" not in kwargs["without_model"]

        launcher._nvidia = False  # a CPU host, the same settings: no request, the run stays launchable
        run = defs.resolve_job_def("with_model").execute_in_process(instance=instance).dagster_run
        assert "device_requests" not in launcher.get_container_context(run).container_kwargs
