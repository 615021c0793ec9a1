"""The job that analyses media: every per-media asset, for the partitions a run names."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, multiprocess_executor

ANALYSE_JOB_NAME = "analyse_media"
PER_MEDIA_GROUPS = ("ingest", "vision", "speech", "search")

# Two cores: run independent branches (audio beside the visual assets) side by side; forkserver
# halves the per-step start cost of spawn (FACTS.md: ~0.85 s vs ~1.7 s a step).
analyse_media_job = define_asset_job(
    ANALYSE_JOB_NAME,
    selection=AssetSelection.groups(*PER_MEDIA_GROUPS),
    executor_def=multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"forkserver": {}}}),
    description="Analyse media files: ingest, keyframes, audio and every analysis of them.",
)
