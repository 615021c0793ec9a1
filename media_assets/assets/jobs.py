"""The job that analyses media: every per-media asset, for the partitions a run names."""

from __future__ import annotations

from dagster import AssetSelection, JobDefinition, define_asset_job

from ops_gpu.executors import analysis_executor

ANALYSE_JOB_NAME = "analyse_media"
PER_MEDIA_GROUPS = ("ingest", "vision", "speech", "search")

# In-process by default: one process per run, each model loaded once (ops_gpu/executors.py says why).
analyse_media_job = define_asset_job(
    ANALYSE_JOB_NAME,
    selection=AssetSelection.groups(*PER_MEDIA_GROUPS),
    executor_def=analysis_executor(),
    description="Analyse media files: ingest, keyframes, audio and every analysis of them.",
)


def analyse_media_in_this_process() -> JobDefinition:
    """The analysis job as `medialens analyse` runs it: through `execute_job`, which needs a
    reconstructable pointer, so the CLI's runs use the job's own (guarded) executor, exactly like
    the daemon's, instead of the plain executor `execute_in_process` substitutes."""
    from media_assets.definitions import defs

    return defs.resolve_job_def(ANALYSE_JOB_NAME)
