"""MEDIALENS_EXECUTOR picks the analysis job's executor; a typo is an error naming the choices."""

from __future__ import annotations

import pytest

from ops_gpu.executors import analysis_executor, multiprocess_config


def test_in_process_by_default() -> None:
    assert analysis_executor({}).name == "in_process"
    assert analysis_executor({"MEDIALENS_EXECUTOR": " In-Process "}).name == "in_process"


def test_multiprocess_preloads_the_code_and_caps_processes() -> None:
    env = {"MEDIALENS_EXECUTOR": "multiprocess", "MEDIALENS_MAX_CONCURRENT": "3"}
    assert analysis_executor(env).name == "multiprocess"
    config = multiprocess_config(env)
    assert config["max_concurrent"] == 3
    assert config["start_method"] == {"forkserver": {"preload_modules": ["media_assets.definitions"]}}
    assert multiprocess_config({})["max_concurrent"] == 2
    with pytest.raises(ValueError, match="whole number"):
        multiprocess_config({"MEDIALENS_MAX_CONCURRENT": "two"})


def test_a_typo_names_the_choices() -> None:
    with pytest.raises(ValueError, match="in_process, multiprocess"):
        analysis_executor({"MEDIALENS_EXECUTOR": "threads"})


def test_the_job_uses_it() -> None:
    from media_assets.definitions import defs

    assert defs.resolve_job_def("analyse_media").executor_def.name == "in_process"
