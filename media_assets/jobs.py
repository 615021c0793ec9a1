"""The job that analyses media: every per-media asset, for the partitions a run names."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

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
