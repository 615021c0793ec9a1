"""Kept so dagster.yaml files written before the package split (module `media_assets.run_launcher`) still load."""

from media_assets.plumbing.run_launcher import MonitoredRunLauncher

__all__ = ["MonitoredRunLauncher"]
