"""The media store: where originals, keyframes, audio and every analysis table live on disk.

Layout (docs/design.md):
  media/<sha[:2]>/<sha><ext>                content-addressed originals (hard-linked when possible)
  incoming/<key><ext>                       files the upload sensor took out of the inbox
  sources/<key>.json                        where a partition's bytes came from (name, path, hash)
  manifests/<asset>/<key>.json              what an asset wrote for a partition (paths, version)
  <asset>/<version>/<key>.parquet           one table per asset, model version and partition
  <asset>/<version>/<key>/...               binary artefacts of that table (keyframe JPEGs, WAV)
  .scratch/<host>-<pid>-<start>/            what a process is still writing (resources/atomic.py)
Every write is built in scratch and renamed into place (resources/atomic.py), so a killed or
out-of-space run never leaves a half file, and what a killed one left is swept by the next run.
Code that walks the store skips dotted entries.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableResource, InitResourceContext

from resources import atomic
from resources.atomic import Approx, StoreFull

__all__ = ["MediaStore", "StoreFull", "move_file"]


def move_file(src: Path, dest: Path) -> None:
    """Rename, or copy and delete when src and dest are on different filesystems. The copy is made
    under a dotted temporary name beside `dest` and renamed, so `dest` is never seen half copied;
    `src` goes only once it is in place. (Into the store, prefer `MediaStore.move_in`: its temporary
    copy is swept after a kill.)"""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
        return
    except OSError:
        pass  # another filesystem (or a rename not allowed there): copy
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(src, tmp)
        atomic.fsync_path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    src.unlink()


class MediaStore(ConfigurableResource):
    """Paths and atomic reads/writes under the store root; shared by assets, sensor and CLI."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Every run starts by removing what killed runs left in the scratch area (one listing of
        a small folder, so it costs nothing when there is nothing to remove)."""
        removed = self.sweep_scratch()
        if removed and context.log is not None:
            context.log.info(f"removed {len(removed)} scratch folder(s) of processes that are gone: {removed}")

    # -- atomic writes (resources/atomic.py) ---------------------------------------------------
    def sweep_scratch(self) -> list[Path]:
        """Remove the scratch folders of this host's processes that are gone; returns them."""
        return atomic.sweep_scratch(self.path)

    def write_bytes(self, target: Path, data: bytes, what: str = "") -> None:
        """Replace a store file with `data`, all or nothing (StoreFull when it does not fit)."""
        atomic.write_bytes(self.path, target, data, what)

    def atomic_file(
        self, target: Path, *, needed: int | None = None, approx: Approx = "exact", what: str = ""
    ) -> AbstractContextManager[Path]:
        """A temporary path to write `target` to; renamed over it when the block succeeds."""
        return atomic.atomic_file(self.path, target, needed=needed, approx=approx, what=what)

    def atomic_dir(self, target: Path, *, what: str = "") -> AbstractContextManager[Path]:
        """An empty folder to fill; swapped in for the folder `target` when the block succeeds."""
        return atomic.atomic_dir(self.path, target, what=what)

    def move_in(self, src: Path, dest: Path) -> None:
        """Move a file into the store: renamed when it can be, else copied in whole, then deleted."""
        atomic.place_file(self.path, src, dest, "move")

    # -- originals -----------------------------------------------------------------------------
    def media_path(self, sha256: str, suffix: str) -> Path:
        return self.path / "media" / sha256[:2] / f"{sha256}{suffix.lower()}"

    def add_original(self, src: Path, sha256: str, suffix: str, move: bool = False, what: str = "") -> Path:
        """Place the bytes at their content address; hard link (or move) before copying. A copy
        that would not fit is refused before it starts (StoreFull)."""
        dest = self.media_path(sha256, suffix)
        if dest.exists() and dest.stat().st_size == src.stat().st_size:
            if move:
                src.unlink()
            return dest
        atomic.place_file(self.path, src, dest, "move" if move else "link", what or f"original of {src.name}")
        return dest

    @property
    def incoming_dir(self) -> Path:
        return self.path / "incoming"

    # -- sources and manifests -----------------------------------------------------------------
    def source_path(self, key: str) -> Path:
        return self.path / "sources" / f"{key}.json"

    def write_source(self, key: str, record: Mapping[str, Any]) -> None:
        self.write_bytes(self.source_path(key), json.dumps(record, indent=2, sort_keys=True).encode())

    def read_source(self, key: str) -> dict[str, Any]:
        path = self.source_path(key)
        if not path.exists():
            raise FileNotFoundError(
                f"no source registered for partition {key!r} ({path} missing): add files with "
                "`medialens analyse PATH` or drop them into the inbox"
            )
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def manifest_path(self, asset: str, key: str) -> Path:
        return self.path / "manifests" / asset / f"{key}.json"

    def manifest_keys(self, asset: str) -> list[str]:
        """The partitions `asset` has a manifest for, sorted (none before its first write)."""
        folder = self.manifest_path(asset, "_").parent
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def write_manifest(self, asset: str, key: str, manifest: Mapping[str, Any]) -> None:
        self.write_bytes(self.manifest_path(asset, key), json.dumps(manifest, indent=2, default=str).encode())

    def read_manifest(self, asset: str, key: str) -> dict[str, Any] | None:
        path = self.manifest_path(asset, key)
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    # -- tables and artefacts ------------------------------------------------------------------
    def table_path(self, asset: str, version: str, key: str) -> Path:
        return self.path / asset / version / f"{key}.parquet"

    def artefact_dir(self, asset: str, version: str, key: str) -> Path:
        return self.path / asset / version / key

    def write_table(self, asset: str, version: str, key: str, table: pa.Table) -> Path:
        path = self.table_path(asset, version, key)
        atomic.write_table(self.path, path, table)
        return path

    @staticmethod
    def read_table(path: str | Path) -> pa.Table:
        return pq.read_table(path)

    def prune_other_versions(self, asset: str, key: str, keep_version: str) -> list[Path]:
        """Remove a partition's outputs of older versions once the new one is written. Each is
        renamed into scratch before it is deleted, so a kill halfway leaves no half folder behind
        (the sweep finishes it)."""
        removed: list[Path] = []
        base = self.path / asset
        if not base.is_dir():
            return removed
        for version_dir in base.iterdir():
            if version_dir.name == keep_version or version_dir.name.startswith(".") or not version_dir.is_dir():
                continue
            for candidate in version_dir.glob(f"{key}*"):
                if candidate.name in (f"{key}.parquet", key) or candidate.name.startswith(f"{key}."):
                    self._discard(candidate)
                    removed.append(candidate)
        return removed

    def _discard(self, path: Path) -> None:
        try:
            aside = atomic.temp_path(self.path, path)
            os.rename(path, aside)
        except OSError:  # on another filesystem (or no room for the scratch folder): delete in place
            aside = path
        atomic.remove_path(aside)
