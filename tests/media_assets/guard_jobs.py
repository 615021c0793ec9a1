"""Tiny jobs on the guarded executor for tests/media_assets/plumbing/test_run_guard.py: two assets in the
`gpu` pool, one of which works (in Python, so an interrupt lands at once) for `GUARD_TEST_WORK_S`.

`python -m tests.media_assets.guard_jobs` runs the job once against DAGSTER_HOME and prints the run
id, so a test can signal a real run in another process.
"""

from __future__ import annotations

import os
import sys
import time

from dagster import (
    DagsterInstance,
    Definitions,
    JobDefinition,
    asset,
    define_asset_job,
    execute_job,
    reconstructable,
)

from ops_gpu.executors import guarded_in_process_executor

POOL = "gpu"


@asset(pool=POOL)
def first_model() -> int:
    end = time.monotonic() + float(os.environ.get("GUARD_TEST_WORK_S", "0"))
    swallow = os.environ.get("GUARD_TEST_SWALLOW") == "1"  # like a library that eats one interrupt
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except BaseException:
            if not swallow:
                raise
            swallow = False
    return 1


@asset(pool=POOL)
def second_model(first_model: int) -> int:
    return first_model + 1


defs = Definitions(
    assets=[first_model, second_model],
    jobs=[define_asset_job("guard_test", executor_def=guarded_in_process_executor)],
)


def guard_test_job() -> JobDefinition:
    return defs.resolve_job_def("guard_test")


def run_once(instance: DagsterInstance) -> str:
    """One run of the job (its result's run id); failures are the run's, not raised."""
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    result = execute_job(reconstructable(guard_test_job), instance=instance, run_config=quiet, raise_on_error=False)
    return result.run_id


if __name__ == "__main__":
    with DagsterInstance.get() as inst:
        try:
            print(run_once(inst), flush=True)
        except KeyboardInterrupt:
            sys.exit(130)
