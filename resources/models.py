"""Model runners: each model loads once per process, on the device `MEDIALENS_DEVICE` picks.

Assets ask for a model by its class and parameters; the first request in a process loads it and
every later run in the same process (the CLI analysing many files, a multi-partition backfill
step) reuses it. Loading happens on first use, never at import.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from dagster import ConfigurableResource, get_dagster_logger

from ops_gpu.device import resolve_device

M = TypeVar("M")
_CACHE: dict[tuple[Hashable, ...], Any] = {}
_LOCK = threading.Lock()


@functools.cache
def _say_cpu_fallback() -> None:
    """Once per process: where `auto` found no GPU, the run's log says so (a GPU host whose driver
    or CUDA build went missing runs on, slower, and the reason is in the first model step's log)."""
    get_dagster_logger().info(
        "MEDIALENS_DEVICE=auto: no CUDA GPU that torch or onnxruntime can use here, so models fall back "
        "to the CPU (MEDIALENS_DEVICE=cuda makes a missing GPU an error instead)"
    )


def cached_model(factory: Callable[[Any, str], M], params: Hashable, device: str) -> M:
    """The model `factory(params, device)`, built at most once per process."""
    key = (getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory)), params, device)
    with _LOCK:
        if key not in _CACHE:
            started = time.perf_counter()
            _CACHE[key] = factory(params, device)
            get_dagster_logger().info(
                f"loaded {key[1]} on {device} in {time.perf_counter() - started:.1f} s (once per process)"
            )
        model: M = _CACHE[key]
        return model


class ModelRunner(ConfigurableResource):
    """Where models run and the per-process cache they live in (one resource for all families)."""

    device: str = "auto"  # auto | cpu | cuda (MEDIALENS_DEVICE)

    def resolved_device(self) -> str:
        device = resolve_device({"MEDIALENS_DEVICE": self.device})
        if device == "cpu" and self.device.strip().lower() in ("", "auto"):
            _say_cpu_fallback()
        return device

    def load(self, factory: Callable[[Any, str], M], params: Hashable) -> M:
        return cached_model(factory, params, self.resolved_device())
