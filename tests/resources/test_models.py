"""Models load once per process, on the device MEDIALENS_DEVICE picks; `auto` without a GPU says
in the log that it fell back to the CPU."""

from __future__ import annotations

import logging

import pytest

from ops_gpu.device import DeviceUnavailable, cuda_available
from resources import models
from resources.models import ModelRunner

pytestmark = pytest.mark.skipif(cuda_available(), reason="a CUDA GPU is visible: nothing falls back here")

loads: list[tuple[str, str]] = []


def tiny_model(params: str, device: str) -> tuple[str, str]:
    loads.append((params, device))
    return params, device


def test_auto_without_a_gpu_falls_back_to_the_cpu_once_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    models._say_cpu_fallback.cache_clear()
    monkeypatch.setattr(models, "_CACHE", {})
    loads.clear()
    runner = ModelRunner(device="auto")
    with caplog.at_level(logging.INFO):
        assert runner.load(tiny_model, "a") == ("a", "cpu")
        assert runner.load(tiny_model, "a") == ("a", "cpu")  # cached: loaded once
        assert runner.load(tiny_model, "b") == ("b", "cpu")
    assert loads == [("a", "cpu"), ("b", "cpu")]
    said = [r.getMessage() for r in caplog.records if "fall back to the CPU" in r.getMessage()]
    assert len(said) == 1 and "MEDIALENS_DEVICE=auto" in said[0]


def test_cpu_asked_for_is_no_fallback_and_cuda_asked_for_is_an_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    models._say_cpu_fallback.cache_clear()
    monkeypatch.setattr(models, "_CACHE", {})
    with caplog.at_level(logging.INFO):
        assert ModelRunner(device="cpu").load(tiny_model, "c") == ("c", "cpu")
    assert not [r for r in caplog.records if "fall back" in r.getMessage()]
    with pytest.raises(DeviceUnavailable, match="MEDIALENS_DEVICE=cuda"):
        ModelRunner(device="cuda").load(tiny_model, "d")
