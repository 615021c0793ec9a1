"""Where users drop files, and how much the upload sensor takes per tick."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class InboxResource(ConfigurableResource):
    """The drop folder (MEDIALENS_INBOX) and per-tick caps that keep each sensor tick short.

    Admission hashes every file, so the byte cap bounds a tick's time on large uploads.
    """

    path: str
    max_files_per_tick: int = 20
    max_mb_per_tick: int = 4096

    @property
    def root(self) -> Path:
        return Path(self.path)
