"""Where users drop files, and how much the upload sensor takes per tick."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class InboxResource(ConfigurableResource):
    """The drop folder (MEDIALENS_INBOX) and per-tick caps that keep each sensor tick short.

    Admission hashes every file, so the byte cap bounds a tick's time on large uploads. The file
    cap also bounds what a tick recovers of earlier, interrupted ticks: 200 files at once take at
    least 200 / max_files_per_tick ticks.

    `settle_seconds`: how long a file must be seen unchanged before it is taken. The daemon's ticks
    are at least 10 s apart, so two looks already mean that much quiet; this guards evaluations that
    come closer together (the UI's "Test sensor", tests that tick in a loop).
    """

    path: str
    max_files_per_tick: int = 20
    max_mb_per_tick: int = 4096
    settle_seconds: float = 2.0

    @property
    def root(self) -> Path:
        return Path(self.path)
