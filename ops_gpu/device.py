"""Choose where inference runs: `MEDIALENS_DEVICE` = auto | cpu | cuda.

`auto` takes CUDA only when a runtime we use can really reach a GPU (torch or onnxruntime), so a
CPU-only machine never fails for want of one; an explicit `cuda` with no GPU is an error that
says why, rather than a silent slow run.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping

DEVICES = ("auto", "cpu", "cuda")
GPU_POOL = "gpu"  # heavy inference steps: at most one at a time per machine (dagster.yaml pools)
CPU_POOL = "cpu"
POOL_ENV = "MEDIALENS_POOL"
PER_MODEL_POOL = GPU_POOL + "-{model}"
_POOL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


class DeviceUnavailable(RuntimeError):
    """`cuda` was asked for explicitly but no usable GPU runtime is present."""


def cuda_available() -> bool:
    """Whether torch or onnxruntime in this environment can run on an NVIDIA GPU."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return True
    return False


def resolve_device(env: Mapping[str, str] | None = None) -> str:
    """The device models should use: "cpu" or "cuda"."""
    env = os.environ if env is None else env
    wanted = env.get("MEDIALENS_DEVICE", "auto").strip().lower() or "auto"
    if wanted not in DEVICES:
        raise ValueError(f"MEDIALENS_DEVICE={wanted!r}: expected one of {', '.join(DEVICES)}")
    if wanted == "cpu":
        return "cpu"
    has_cuda = cuda_available()
    if wanted == "cuda" and not has_cuda:
        raise DeviceUnavailable(
            "MEDIALENS_DEVICE=cuda but neither torch nor onnxruntime can see a CUDA GPU here; "
            "install the CUDA builds or set MEDIALENS_DEVICE=auto"
        )
    return "cuda" if has_cuda else "cpu"


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for a device, CPU always last as the fallback."""
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def model_pool(model: str, env: Mapping[str, str] | None = None) -> str:
    """The Dagster pool `model`'s steps run in, from `MEDIALENS_POOL` (a name, `{model}` optional).

    Each pool name has its own limit (dagster.yaml `pools.default_limit: 1`), across the whole
    instance, so the name decides what may run side by side. On CPU every heavy step uses all cores:
    one pool `gpu` for all of them, one at a time (the default). On a GPU host one pool per model
    (`gpu-{model}`, the default with MEDIALENS_DEVICE=cuda) lets faces of one run and OCR of another
    share the GPU while two steps of one model never compete. Several hosts on one instance each set
    their own name (`gpu-hostA-{model}`), so one host's steps never wait for another host's slot.
    A limit per pool is `dagster instance concurrency set <pool> N`.
    """
    env = os.environ if env is None else env
    template = env.get(POOL_ENV, "").strip()
    if not template:
        cuda = env.get("MEDIALENS_DEVICE", "").strip().lower() == "cuda"
        template = PER_MODEL_POOL if cuda else GPU_POOL
    try:
        name = template.format(model=model)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"{POOL_ENV}={template!r}: the only placeholder is {{model}} (e.g. gpu-{{model}}): {exc}"
        ) from None
    if not _POOL_NAME.fullmatch(name):
        raise ValueError(f"{POOL_ENV}={template!r}: a pool name is letters, digits and _ . : - only")
    return name
