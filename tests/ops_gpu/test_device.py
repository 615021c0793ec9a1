import pytest

from ops_gpu.device import DeviceUnavailable, cuda_available, model_pool, onnx_providers, resolve_device


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


def test_one_pool_for_every_model_on_cpu() -> None:
    assert model_pool("ocr_text", {}) == model_pool("faces", {"MEDIALENS_DEVICE": "auto"}) == "gpu"
    assert model_pool("faces", {"MEDIALENS_DEVICE": "cpu"}) == "gpu"


def test_a_pool_per_model_on_a_gpu_host() -> None:
    cuda = {"MEDIALENS_DEVICE": "CUDA"}
    assert model_pool("ocr_text", cuda) == "gpu-ocr_text"
    assert model_pool("faces", cuda) == "gpu-faces"


def test_the_pool_name_is_a_setting() -> None:
    assert model_pool("faces", {"MEDIALENS_POOL": "gpu-hostA-{model}"}) == "gpu-hostA-faces"
    assert model_pool("faces", {"MEDIALENS_POOL": "gpu", "MEDIALENS_DEVICE": "cuda"}) == "gpu"
    with pytest.raises(ValueError, match=r"MEDIALENS_POOL='gpu-\{host\}'.*only placeholder is \{model\}"):
        model_pool("faces", {"MEDIALENS_POOL": "gpu-{host}"})
    with pytest.raises(ValueError, match="letters, digits"):
        model_pool("faces", {"MEDIALENS_POOL": "my gpu"})
