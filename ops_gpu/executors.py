"""Which Dagster executor runs the analysis job's steps: `MEDIALENS_EXECUTOR` = in_process | multiprocess.

In-process is the default because it was twice as fast here: the heavy steps share the `gpu` pool
(one at a time per machine), so a multiprocess run gained no parallelism, yet paid a process start
and a fresh model load per step plus the pool's wait between steps (20 files, 2 cores: 80 s
multiprocess vs 48 s in-process; bench/executors.py measures it side by side). One process per run
also loads each model once for all the run's partitions. More throughput comes from more runs at
once (`max_concurrent_runs`) and more machines (deploy/: Docker run launcher), not from more
processes per run. `multiprocess` remains for machines with many cores and small models, where
light steps and the audio branch can overlap; `MEDIALENS_MAX_CONCURRENT` caps its processes.

Both are Dagster's executors wrapped by media_assets/plumbing/run_guard.py: a run records its worker, never
waits for a pool slot silently or forever, and ends CANCELED on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import ExecutorDefinition, executor
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)

from media_assets.plumbing.run_guard import GuardedExecutor

EXECUTORS = ("in_process", "multiprocess")


@executor(name="in_process", config_schema=IN_PROC_CONFIG)
def guarded_in_process_executor(init_context: Any) -> GuardedExecutor:
    """Dagster's in-process executor, guarded (every step in the run's process)."""
    return GuardedExecutor(_core_in_process_executor_creation(init_context.executor_config))


@executor(name="multiprocess", config_schema=MULTI_PROC_CONFIG, requirements=multiple_process_executor_requirements())
def guarded_multiprocess_executor(init_context: Any) -> GuardedExecutor:
    """Dagster's multiprocess executor, guarded; it stops its step processes on a signal itself."""
    inner = _core_multiprocess_executor_creation(init_context.executor_config)
    return GuardedExecutor(inner, stop_on_interrupt=False)


def analysis_executor(env: Mapping[str, str] | None = None) -> ExecutorDefinition:
    """The executor for the analysis job, from the environment (clear error for a typo)."""
    env = os.environ if env is None else env
    if executor_kind(env) == "in_process":
        return guarded_in_process_executor
    return guarded_multiprocess_executor.configured(multiprocess_config(env))


def executor_kind(env: Mapping[str, str] | None = None) -> str:
    """`in_process` or `multiprocess`, from MEDIALENS_EXECUTOR (clear error for a typo)."""
    env = os.environ if env is None else env
    kind = (env.get("MEDIALENS_EXECUTOR") or "in_process").strip().lower().replace("-", "_")
    if kind not in EXECUTORS:
        raise ValueError(
            f"MEDIALENS_EXECUTOR={env.get('MEDIALENS_EXECUTOR')!r}: expected one of {', '.join(EXECUTORS)}"
        )
    return kind


def multiprocess_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The multiprocess executor's config: forkserver with our code preloaded, so a step process
    forks from an interpreter that already imported Dagster, torch and the asset modules (FACTS.md:
    spawn ~1.7 s a step, forkserver ~0.85 s); `MEDIALENS_MAX_CONCURRENT` processes at once."""
    raw = env.get("MEDIALENS_MAX_CONCURRENT") or "2"
    try:
        concurrent = int(raw)
    except ValueError:
        raise ValueError(f"MEDIALENS_MAX_CONCURRENT={raw!r}: expected a whole number of processes") from None
    return {
        "max_concurrent": max(1, concurrent),
        "start_method": {"forkserver": {"preload_modules": ["media_assets.definitions"]}},
    }
