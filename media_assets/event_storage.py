"""Kept so dagster.yaml files written before the package split (module `media_assets.event_storage`) still load."""

from media_assets.plumbing.event_storage import BatchingSqliteStorage

__all__ = ["BatchingSqliteStorage"]
