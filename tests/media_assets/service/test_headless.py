"""The DAGSTER_HOME the CLI writes: the settings dagster_home/dagster.yaml has, and homes written by
an earlier version brought up to date unless the user edited them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from media_assets.plumbing.config import Paths
from media_assets.service.headless import (
    CRASH_SAFETY,
    QUEUE,
    _crash_safe_yaml,
    dagster_instance,
    earlier_instance_yamls,
    instance_yaml,
)

REPO_YAML = Path(__file__).resolve().parents[3] / "dagster_home" / "dagster.yaml"


def test_a_new_home_starts_queued_runs_within_a_second(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert getattr(instance.run_coordinator, "dequeue_interval_seconds", None) == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2


def test_the_repo_instance_has_the_same_queue_and_crash_safety() -> None:
    repo = yaml.safe_load(REPO_YAML.read_text())
    for key, value in {**QUEUE, **CRASH_SAFETY}.items():
        assert repo[key] == value, key


def test_a_home_of_the_version_before_gets_the_new_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    before = _crash_safe_yaml(home)
    assert before in earlier_instance_yamls(home) and "run_coordinator" not in before
    (home / "dagster.yaml").write_text(before)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dagster_instance(Paths.from_env({"MEDIALENS_HOME": str(tmp_path / "home")})) as instance:
        assert getattr(instance.run_coordinator, "dequeue_interval_seconds", None) == 1
    assert (home / "dagster.yaml").read_text() == instance_yaml(home)
