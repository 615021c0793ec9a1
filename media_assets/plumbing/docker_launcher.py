"""dagster-docker's `DockerRunLauncher`, plus the host's GPUs for runs whose steps need them.

The compose stack (deploy/compose.yaml) launches every run in a container of its own. A run with
a model step (one in a pool: `ops_gpu.device.model_pool`) gets the host's GPUs through
Docker `device_requests`; other runs, and every run on a host without an NVIDIA runtime, get
none. So one `deploy/.env` serves GPU and CPU hosts: on a CPU host `MEDIALENS_DEVICE=auto` finds
no GPU in the run container and says so in the run's log (resources/models.py).

`gpus` (instance config, usually `{env: MEDIALENS_GPUS}`) decides which GPUs:
  auto   all of them when MEDIALENS_DEVICE is not `cpu` and Docker has an `nvidia` runtime (default)
  all    all of them (an error at launch when Docker has none: what `MEDIALENS_DEVICE=cuda` means)
  none   never
  0,2    those device ids
Only importable where dagster-docker is installed (the image's `deploy` extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.dagster_run import DagsterRun
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.utils import DOCKER_CONFIG_SCHEMA

_IDS = re.compile(r"^\d+(,\d+)*$")


def gpu_request(gpus: str, device: str, nvidia_runtime: bool) -> dict[str, Any] | None:
    """The Docker device request for a model run, or None when it should get no GPU.

    `device` is MEDIALENS_DEVICE; `nvidia_runtime` whether the Docker host has NVIDIA's runtime.
    """
    choice = (gpus or "auto").strip().lower()
    if choice == "none" or device == "cpu":
        return None
    if choice == "auto":
        if device != "cuda" and not nvidia_runtime:
            return None
        choice = "all"
    if choice == "all":
        return {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}
    if not _IDS.match(choice):
        raise ValueError(f"MEDIALENS_GPUS={gpus!r}: expected auto, all, none or device ids like 0,1")
    return {"driver": "nvidia", "device_ids": choice.split(","), "capabilities": [["gpu"]]}


def runs_model_steps(pools: Iterable[str | None]) -> bool:
    """Whether any step runs in a pool: only model steps have one (assets/model_assets.py), named
    by MEDIALENS_POOL however a host sets it (`gpu`, `gpu-ocr_text`, `hostA-faces`, ...)."""
    return any(pools)


class MediaLensDockerRunLauncher(DockerRunLauncher):
    """Each run in its own container (dagster-docker); model runs also get the host's GPUs."""

    def __init__(self, inst_data: Any = None, gpus: str | None = None, **kwargs: Any) -> None:
        self.gpus = gpus or "auto"
        self._nvidia: bool | None = None
        super().__init__(inst_data=inst_data, **kwargs)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **DOCKER_CONFIG_SCHEMA,
            "gpus": Field(StringSource, is_required=False, default_value="auto",
                          description="auto, all, none or device ids (0,1): GPUs for runs with model steps"),
        }  # fmt: skip

    def get_container_context(self, dagster_run: DagsterRun) -> DockerContainerContext:
        context = super().get_container_context(dagster_run)
        if "device_requests" in context.container_kwargs or not self._runs_model_steps(dagster_run):
            return context
        device = os.environ.get("MEDIALENS_DEVICE", "auto").strip().lower()
        request = gpu_request(self.gpus, device, self._nvidia_runtime(context))
        if request is None:
            return context
        return context.merge(DockerContainerContext(container_kwargs={"device_requests": [request]}))

    def _runs_model_steps(self, run: DagsterRun) -> bool:
        if run.execution_plan_snapshot_id is None:
            return False
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        return runs_model_steps(step.pool for step in plan.steps)

    def _nvidia_runtime(self, context: DockerContainerContext) -> bool:
        # asked once per launcher: a Docker host does not gain a runtime while the daemon runs
        if self._nvidia is None:
            self._nvidia = "nvidia" in (self._get_client(context).info().get("Runtimes") or {})
        return self._nvidia
