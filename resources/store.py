"""The media store: where originals, keyframes, audio and every analysis table live on disk.

Layout (DESIGN.md):
  media/<sha[:2]>/<sha><ext>                content-addressed originals (hard-linked when possible)
  incoming/<key><ext>                       files the upload sensor took out of the inbox
  sources/<key>.json                        where a partition's bytes came from (name, path, hash)
  manifests/<asset>/<key>.json              what an asset wrote for a partition (paths, version)
  <asset>/<version>/<key>.parquet           one table per asset, model version and partition
  <asset>/<version>/<key>/...               binary artefacts of that table (keyframe JPEGs, WAV)
Writes are atomic (temporary name + rename), so a failed run never leaves a half table.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import ConfigurableResource


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_file(src: Path, dest: Path) -> None:
    """Rename, or copy and delete when src and dest are on different filesystems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
        src.unlink()


class MediaStore(ConfigurableResource):
    """Paths and atomic reads/writes under the store root; shared by assets, sensor and CLI."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    # -- originals -----------------------------------------------------------------------------
    def media_path(self, sha256: str, suffix: str) -> Path:
        return self.path / "media" / sha256[:2] / f"{sha256}{suffix.lower()}"

    def add_original(self, src: Path, sha256: str, suffix: str, move: bool = False) -> Path:
        """Place the bytes at their content address; hard link (or move) before copying."""
        dest = self.media_path(sha256, suffix)
        if dest.exists() and dest.stat().st_size == src.stat().st_size:
            if move:
                src.unlink()
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            if move:
                move_file(src, tmp)
            else:
                try:
                    os.link(src, tmp)
                except OSError:  # another filesystem, or links not allowed
                    shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest

    @property
    def incoming_dir(self) -> Path:
        return self.path / "incoming"

    # -- sources and manifests -----------------------------------------------------------------
    def source_path(self, key: str) -> Path:
        return self.path / "sources" / f"{key}.json"

    def write_source(self, key: str, record: Mapping[str, Any]) -> None:
        _atomic_write_bytes(self.source_path(key), json.dumps(record, indent=2, sort_keys=True).encode())

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

    def write_manifest(self, asset: str, key: str, manifest: Mapping[str, Any]) -> None:
        _atomic_write_bytes(self.manifest_path(asset, key), json.dumps(manifest, indent=2, default=str).encode())

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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    @staticmethod
    def read_table(path: str | Path) -> pa.Table:
        return pq.read_table(path)

    def fresh_artefact_dir(self, asset: str, version: str, key: str) -> Path:
        """An empty folder for a partition's artefacts (what a failed earlier attempt left is cleared)."""
        d = self.artefact_dir(asset, version, key)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def prune_other_versions(self, asset: str, key: str, keep_version: str) -> list[Path]:
        """Remove a partition's outputs of older versions once the new one is written."""
        removed: list[Path] = []
        base = self.path / asset
        if not base.is_dir():
            return removed
        for version_dir in base.iterdir():
            if version_dir.name == keep_version or not version_dir.is_dir():
                continue
            for candidate in version_dir.glob(f"{key}*"):
                if candidate.name in (f"{key}.parquet", key) or candidate.name.startswith(f"{key}."):
                    if candidate.is_dir():
                        shutil.rmtree(candidate)
                    else:
                        candidate.unlink()
                    removed.append(candidate)
        return removed
