"""Admit a file as a media partition: the one gate both the upload sensor and the CLI go through.

Admission reads only headers (sniff + probe + limits) and hashes the bytes; a refused file never
becomes a partition, and the same bytes under another name resolve to the partition that exists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from media_assets.analysis.inspect import Limits, MediaInfo, MediaRejected, inspect_media, sha256_of
from media_assets.plumbing.partitions import key_for_existing_content, partition_key_for
from resources.store import MediaStore

Status = Literal["new", "duplicate", "rejected"]
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


@dataclass(frozen=True)
class Admission:
    """The verdict on one file: a new partition, a duplicate of one, or refused with a reason."""

    source: Path
    source_name: str
    status: Status
    key: str | None = None
    sha256: str | None = None
    reason: str | None = None
    info: MediaInfo | None = None


def admit(path: Path, limits: Limits, existing_keys: Iterable[str], source_name: str | None = None) -> Admission:
    """Check a file and name its partition; never raises for bad input."""
    name = source_name or path.name
    try:
        info = inspect_media(path, limits)
        sha = sha256_of(path)
    except MediaRejected as exc:
        return Admission(source=path, source_name=name, status="rejected", reason=exc.reason)
    except OSError as exc:
        return Admission(source=path, source_name=name, status="rejected", reason=f"cannot read file: {exc}")
    existing = key_for_existing_content(sha, existing_keys)
    if existing is not None:
        return Admission(
            source=path,
            source_name=name,
            status="duplicate",
            key=existing,
            sha256=sha,
            info=info,
            reason=f"same bytes as {existing}, already registered",
        )
    key = partition_key_for(name, sha)
    return Admission(source=path, source_name=name, status="new", key=key, sha256=sha, info=info)


def stored_suffix(source_name: str, container: str) -> str:
    """File extension for the stored copy: the user's if it is sane, else the sniffed container."""
    suffix = Path(source_name).suffix.lower()
    return suffix if _SAFE_SUFFIX.match(suffix) else f".{re.sub(r'[^a-z0-9]', '', container.lower())[:8] or 'bin'}"


def register(store: MediaStore, admission: Admission, source_path: Path, move: bool) -> None:
    """Record where a new partition's bytes are, for `media_file` to take them into the store.

    `move`: the file belongs to us (taken out of the inbox) and is moved, not copied, into the store.
    The upload sensor writes this record before it moves the file to `source_path`, so a file found
    there always has its record (`taken_source`).
    """
    if admission.status != "new" or admission.key is None or admission.info is None:
        raise ValueError(f"only a new admission can be registered, not {admission.status}")
    store.write_source(
        admission.key,
        {
            "key": admission.key,
            "source_name": admission.source_name,
            "path": str(source_path),
            "move": move,
            "sha256": admission.sha256,
            "size_bytes": admission.info.size_bytes,
            "suffix": stored_suffix(admission.source_name, admission.info.container),
            "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "registered_ts": time.time(),
        },
    )


def taken_source(store: MediaStore, key: str, path: Path) -> dict[str, Any] | None:
    """The source record of `key` if it is the one written for the file at `path` (a file the upload
    sensor took), else None: a record that is missing, unreadable or about another file is not
    trusted to describe these bytes."""
    try:
        record = store.read_source(key)
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("path") != str(path) or not record.get("sha256"):
        return None
    return record


def registered_ts(record: dict[str, Any]) -> float:
    """When a source record was written (epoch seconds); records of earlier versions have only the
    ISO time, to the second."""
    ts = record.get("registered_ts")
    if isinstance(ts, int | float):
        return float(ts)
    try:
        return datetime.fromisoformat(str(record.get("registered_at"))).timestamp()
    except ValueError:
        return 0.0
