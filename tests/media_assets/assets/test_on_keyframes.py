"""Batching, corrupt-frame skipping and result reuse, with a counting callable as the 'model'."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from media_assets.assets.on_keyframes import KeyframeRef, run_on_keyframes


class MeanBrightness:
    """A tiny deterministic 'model': one record per image, and a log of batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[float]]:
        self.batches.append(len(images))
        return [[float(img.mean())] for img in images]


def frame(tmp_path: Path, kf: int, value: int, reason: str = "cut") -> KeyframeRef:
    path = tmp_path / f"{kf:05d}.jpg"
    Image.new("RGB", (64, 36), (value, value, value)).save(path)
    return KeyframeRef(kf=kf, t=kf * 4.0, path=str(path), reason=reason, shot=kf)


def test_batches_and_order(tmp_path: Path) -> None:
    refs = [frame(tmp_path, i, 20 * i) for i in range(5)]
    model = MeanBrightness()
    out, stats = run_on_keyframes(model, refs, batch_size=2)
    assert model.batches == [2, 2, 1]
    assert [r.kf for r, _ in out] == [0, 1, 2, 3, 4]
    assert [round(recs[0]) for _, recs in out] == [0, 20, 40, 60, 80]
    assert stats.inferred == 5 and stats.reused == 0 and not stats.skipped


def test_a_corrupt_keyframe_is_skipped_not_fatal(tmp_path: Path) -> None:
    refs = [frame(tmp_path, i, 100) for i in range(3)]
    Path(refs[1].path).write_bytes(b"\xff\xd8\xff garbage")
    warnings: list[str] = []
    out, stats = run_on_keyframes(MeanBrightness(), refs, warn=warnings.append)
    assert [len(recs) for _, recs in out] == [1, 0, 1]
    assert len(stats.skipped) == 1 and "keyframe 1" in stats.skipped[0] and warnings


def test_an_unchanged_gap_keyframe_reuses_the_previous_result(tmp_path: Path) -> None:
    refs = [frame(tmp_path, 0, 100), frame(tmp_path, 1, 100, "gap"), frame(tmp_path, 2, 101, "gap"),
            frame(tmp_path, 3, 200, "gap"), frame(tmp_path, 4, 200, "cut")]  # fmt: skip
    model = MeanBrightness()
    out, stats = run_on_keyframes(model, refs, batch_size=8, reuse_unchanged=True)
    assert stats.reused == 2 and stats.inferred == 3  # a cut is always inferred, even if it looks the same
    assert [round(recs[0]) for _, recs in out] == [100, 100, 100, 200, 200]


def test_no_keyframes_no_calls() -> None:
    model = MeanBrightness()
    out, stats = run_on_keyframes(model, [])
    assert out == [] and model.batches == [] and stats.frames == 0
