"""Run a model over a partition's keyframes: in batches, skipping corrupt frames, reusing results.

Every visual asset reads the keyframes `keyframes` stored (never the video again). A keyframe
that cannot be decoded is skipped with a warning instead of failing the partition; a "gap"
keyframe that shows the same picture as the one before (a slide held for a minute) reuses the
previous result, which is what makes talks cheap: every keyframe model declares it (a 5-minute talk
of 80 keyframes, 60 of them held: each model runs 20 times, not 80). With a `cache`
(resources/inference_cache.py), a keyframe whose file bytes were analysed before by the same model
version takes the stored result instead of running the model.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

REUSE_MAX_DIFF = 2.0  # mean absolute difference (0..255) of 64x36 grey thumbnails: "same picture"


@dataclass(frozen=True)
class KeyframeRef:
    """One keyframe of the index written by `keyframes`."""

    kf: int
    t: float
    path: str
    reason: str
    shot: int


class ResultCache(Protocol):
    """Stored results by sha256 of the input file (resources.inference_cache.ScopedCache fits);
    a miss is None, an empty list is a hit. Must not raise when its store is unreachable."""

    def get_many(self, keys: Sequence[str]) -> list[Any | None]: ...

    def put_many(self, items: Mapping[str, Any]) -> None: ...


@dataclass
class RunStats:
    """What happened to the frames, for the asset's metadata."""

    frames: int = 0
    inferred: int = 0
    reused: int = 0
    cache_hits: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "keyframes": self.frames,
            "inferred_keyframes": self.inferred,
            "reused_keyframes": self.reused,
            "cache_hits": self.cache_hits,
            "skipped_keyframes": len(self.skipped),
            "model_seconds": round(self.seconds, 2),
        }


def keyframe_refs(keyframes_manifest: dict[str, Any]) -> list[KeyframeRef]:
    """The keyframes of one partition, in time order (none for audio-only media)."""
    if not keyframes_manifest.get("count"):
        return []
    table = pq.read_table(keyframes_manifest["table"], columns=["idx", "t", "path", "reason", "shot"])
    return [
        KeyframeRef(kf=r["idx"], t=r["t"], path=r["path"], reason=r["reason"], shot=r["shot"])
        for r in table.to_pylist()
    ]


def load_rgb(path: str | io.BytesIO) -> np.ndarray:
    """A keyframe as an RGB uint8 array (raises OSError for a missing or corrupt file)."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def _thumb(data: bytes) -> np.ndarray:
    """The 64x36 grey thumbnail that tells a held picture, from the JPEG decoded at 1/8 scale
    (a tenth of a full decode, which a reused keyframe never needs)."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (128, 72))
        return np.asarray(img.convert("L").resize((64, 36)), dtype=np.float32)


def run_on_keyframes(
    model: Callable[[Sequence[np.ndarray]], list[list[Any]]],
    refs: Sequence[KeyframeRef],
    batch_size: int = 8,
    reuse_unchanged: bool = False,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    cache: ResultCache | None = None,
) -> tuple[list[tuple[KeyframeRef, list[Any]]], RunStats]:
    """`model` over every keyframe; returns (keyframe, records) in order, and what it did.

    With `cache`, keyframes are looked up by the sha256 of their file (one `get_many` per batch)
    and only the misses reach `model`, whose results are stored (one `put_many` per batch)."""
    stats = RunStats(frames=len(refs))
    results: dict[int, list[Any]] = {}
    reuse_of: dict[int, int] = {}  # kf -> kf whose results it reuses
    prev_thumb: np.ndarray | None = None
    prev_kf: int | None = None
    next_report = 0.25

    def skip(ref: KeyframeRef, exc: Exception) -> None:
        stats.skipped.append(f"keyframe {ref.kf} at {ref.t:.1f} s: {exc}")
        if warn:
            warn(f"skipping unreadable keyframe {ref.kf} ({ref.path}): {exc}")
        results[ref.kf] = []

    for start in range(0, len(refs), batch_size):
        batch = refs[start : start + batch_size]
        todo: list[tuple[KeyframeRef, np.ndarray]] = []
        digests: dict[int, str] = {}
        for ref in batch:
            try:
                with open(ref.path, "rb") as f:
                    data = f.read()
                thumb = _thumb(data) if reuse_unchanged else None
            except (OSError, ValueError) as exc:
                skip(ref, exc)
                continue
            if thumb is not None:
                same = (
                    ref.reason == "gap"
                    and prev_thumb is not None
                    and prev_kf is not None
                    and float(np.abs(thumb - prev_thumb).mean()) <= REUSE_MAX_DIFF
                )
                prev_thumb = thumb
                if same and prev_kf is not None:
                    reuse_of[ref.kf] = reuse_of.get(prev_kf, prev_kf)
                    stats.reused += 1
                    prev_kf = ref.kf
                    continue
                prev_kf = ref.kf
            try:
                image = load_rgb(io.BytesIO(data))
            except (OSError, ValueError) as exc:  # its thumbnail decoded, its full picture did not
                skip(ref, exc)
                continue
            if cache is not None:
                digests[ref.kf] = hashlib.sha256(data).hexdigest()
            todo.append((ref, image))
        if todo and cache is not None:
            cached = cache.get_many([digests[ref.kf] for ref, _ in todo])
            for (ref, _), records in zip(todo, cached, strict=True):
                if records is not None:
                    results[ref.kf] = list(records)
                    stats.cache_hits += 1
            todo = [(ref, image) for ref, image in todo if ref.kf not in results]
        if todo:
            started = time.perf_counter()
            outputs = model([image for _, image in todo])
            stats.seconds += time.perf_counter() - started
            stats.inferred += len(todo)
            for (ref, _), records in zip(todo, outputs, strict=True):
                results[ref.kf] = list(records)
            if cache is not None:
                cache.put_many({digests[ref.kf]: results[ref.kf] for ref, _ in todo})
        done = min(start + batch_size, len(refs)) / max(len(refs), 1)
        if log and len(refs) > batch_size and done >= next_report:
            log(f"{done:.0%} of {len(refs)} keyframes")
            next_report += 0.25
    ordered = [(ref, results[reuse_of[ref.kf]] if ref.kf in reuse_of else results[ref.kf]) for ref in refs]
    return ordered, stats
