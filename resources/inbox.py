"""Where users drop files, and how much the upload sensor takes per tick."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

S3_SCHEME = "s3://"


class InboxResource(ConfigurableResource):
    """The drop folder (MEDIALENS_INBOX) and per-tick caps that keep each sensor tick short.

    `path` is a local folder, or `s3://bucket/prefix` for an S3-compatible bucket (sensors/s3_inbox.py):
    `endpoint_url` (MEDIALENS_S3_ENDPOINT_URL or AWS_ENDPOINT_URL; unset: AWS itself) and
    `region` (AWS_DEFAULT_REGION) name the service; the credentials are boto3's own (AWS_ACCESS_KEY_ID
    and AWS_SECRET_ACCESS_KEY, a profile or an instance role) and never part of this configuration.

    Admission hashes every file, so the byte cap bounds a tick's time on large uploads (for S3 also
    its downloads). The file cap also bounds what a tick recovers of earlier, interrupted ticks: 200
    files at once take at least 200 / max_files_per_tick ticks.

    `settle_seconds`: how long a file must be seen unchanged before it is taken. The daemon's ticks
    are at least 5 s apart, so two looks already mean that much quiet; this guards evaluations that
    come closer together (the UI's "Test sensor", tests that tick in a loop).

    `quiet_seconds` (MEDIALENS_INBOX_QUIET_SECONDS): a local file whose last change is at least this
    old by the inbox file system's own clock (its ctime against a dotfile touched at the look) is
    taken at its first look, a tick earlier. 0 always waits for the second look: for a file system
    that does not keep ctime, or writers that pause longer than this in the middle of a file
    (a writer that renames `name.part` to `name` when done is safe either way).
    """

    path: str
    max_files_per_tick: int = 20
    max_mb_per_tick: int = 4096
    settle_seconds: float = 2.0
    quiet_seconds: float = 2.0
    endpoint_url: str | None = None
    region: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.path.startswith(S3_SCHEME)

    @property
    def root(self) -> Path:
        """The local inbox folder (not for an S3 inbox)."""
        if self.is_s3:
            raise ValueError(f"the inbox {self.path} is an S3 prefix, not a folder")
        return Path(self.path)
