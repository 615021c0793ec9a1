import pytest

from ops_gpu.device import DeviceUnavailable, cuda_available, onnx_providers, resolve_device


def test_cpu_is_always_cpu() -> None:
    assert resolve_device({"MEDIALENS_DEVICE": "cpu"}) == "cpu"


def test_auto_falls_back_to_cpu_without_a_gpu() -> None:
    expected = "cuda" if cuda_available() else "cpu"
    assert resolve_device({}) == expected
    assert resolve_device({"MEDIALENS_DEVICE": "AUTO"}) == expected


def test_explicit_cuda_without_gpu_says_why() -> None:
    if cuda_available():
        assert resolve_device({"MEDIALENS_DEVICE": "cuda"}) == "cuda"
        return
    with pytest.raises(DeviceUnavailable, match="MEDIALENS_DEVICE=cuda"):
        resolve_device({"MEDIALENS_DEVICE": "cuda"})


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        resolve_device({"MEDIALENS_DEVICE": "tpu"})


def test_cpu_provider_is_always_the_fallback() -> None:
    assert onnx_providers("cuda")[-1] == "CPUExecutionProvider"
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
