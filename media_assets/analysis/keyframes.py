"""Pick the frames every visual analysis looks at, decoding each video exactly once.

A keyframe is taken at the first frame, at every shot change (a sudden change of a small luma
thumbnail relative to the recent motion level) and at least every `max_gap_s`. Only keyframes are
converted to RGB; all other frames are read as a tiny luma plane, which keeps decoding near the
speed of the bare PyAV loop.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps

from media_assets.analysis.inspect import MediaRejected
from media_assets.analysis.params import known_fields
from resources.faults import fault_point

THUMB_W, THUMB_H = 64, 36
CELL_DIFF = 10.0  # a thumbnail cell "changed" when its mean luma moved by more than this (0..255)
_PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


@dataclass(frozen=True)
class KeyframeParams:
    """How densely keyframes are picked and stored (config `keyframes:`)."""

    max_gap_s: float = 4.0
    min_gap_s: float = 0.5
    cut_threshold: float = 0.03
    cut_ratio: float = 3.0
    max_side: int = 1920
    jpeg_quality: int = 90

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> KeyframeParams:
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class Keyframe:
    """One stored keyframe: the row of the keyframe index."""

    idx: int
    t: float
    shot: int
    reason: str  # "first" | "cut" | "gap" | "image"
    sharpness: float
    width: int
    height: int
    sha256: str
    path: str


KEYFRAME_SCHEMA = pa.schema(
    [
        ("idx", pa.int32()),
        ("t", pa.float64()),
        ("shot", pa.int32()),
        ("reason", pa.string()),
        ("sharpness", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("path", pa.string()),
    ]
)


def keyframes_table(frames: list[Keyframe]) -> pa.Table:
    """The Parquet index of a partition's keyframes (empty, with schema, for audio-only media)."""
    return pa.Table.from_pylist([asdict(k) for k in frames], schema=KEYFRAME_SCHEMA)


class _Writer:
    """Stores keyframes as JPEGs named by index and computes their sharpness.

    The JPEGs go to `out_dir`, while the index records them under `final_dir`: the store builds
    the folder elsewhere and moves it into place whole, so the paths must be where it will be."""

    def __init__(self, out_dir: Path, params: KeyframeParams, final_dir: Path | None = None) -> None:
        self.out_dir = out_dir
        self.final_dir = final_dir or out_dir
        self.params = params
        out_dir.mkdir(parents=True, exist_ok=True)
        self.frames: list[Keyframe] = []

    def add(self, img: Image.Image, t: float, shot: int, reason: str) -> None:
        img = img.convert("RGB")
        if max(img.size) > self.params.max_side:
            img.thumbnail((self.params.max_side, self.params.max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=self.params.jpeg_quality)
        data = buf.getvalue()
        idx = len(self.frames)
        name = f"{idx:05d}.jpg"
        (self.out_dir / name).write_bytes(data)
        fault_point("keyframes:frame")
        self.frames.append(
            Keyframe(
                idx=idx,
                t=round(t, 3),
                shot=shot,
                reason=reason,
                sharpness=round(sharpness(img), 1),
                width=img.width,
                height=img.height,
                sha256=hashlib.sha256(data).hexdigest(),
                path=str(self.final_dir / name),
            )
        )


def sharpness(img: Image.Image) -> float:
    """Variance of the Laplacian of the grey image (≤640 px): low values mean blur."""
    grey = img.convert("L")
    if max(grey.size) > 640:
        grey = grey.copy()
        grey.thumbnail((640, 640))
    a = np.asarray(grey, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    return float(lap.var())


def luma_thumb(frame: av.VideoFrame) -> np.ndarray:
    """A THUMB_H x THUMB_W grid of mean luma, read straight from the Y plane when possible."""
    y: np.ndarray
    if frame.format.name in _PLANAR_8BIT:
        plane = frame.planes[0]
        y = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    else:
        y = frame.to_ndarray(format="gray")
    step = max(1, min(y.shape[0] // (THUMB_H * 4), y.shape[1] // (THUMB_W * 4)))
    y = y[::step, ::step]
    ch, cw = y.shape[0] // THUMB_H, y.shape[1] // THUMB_W
    if ch == 0 or cw == 0:  # tiny video: compare the pixels themselves
        return y.astype(np.float32)
    y = y[: ch * THUMB_H, : cw * THUMB_W].astype(np.float32)
    return y.reshape(THUMB_H, ch, THUMB_W, cw).mean(axis=(1, 3))


def extract_video_keyframes(
    path: Path,
    out_dir: Path,
    params: KeyframeParams,
    declared_duration_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    final_dir: Path | None = None,
) -> list[Keyframe]:
    """Decode the video once and store its keyframes; raise MediaRejected if it is truncated.

    `final_dir`: where `out_dir` will be moved once complete (the paths the index records)."""
    writer = _Writer(out_dir, params, final_dir)
    prev: np.ndarray | None = None
    prev_t = 0.0
    baseline = 0.0
    shot = 0
    last_kf_t = float("-inf")
    pending_cut = False
    t = 0.0
    n_frames = 0
    next_report = 0.1
    try:
        with av.open(str(path)) as cont:
            stream = next(s for s in cont.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
            stream.thread_type = "AUTO"
            # Frames no other frame refers to (most B-frames) are never decoded: half the decode work
            # on a typical H.264 encode, and a cut is still seen within a frame or two of where it is.
            stream.codec_context.skip_frame = "NONREF"
            tb = stream.time_base
            start = stream.start_time or 0
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            for frame in cont.decode(stream):
                t = float((frame.pts - start) * tb) if frame.pts is not None and tb else n_frames / fps
                n_frames += 1
                thumb = luma_thumb(frame)
                if prev is None or prev.shape != thumb.shape:
                    writer.add(frame.to_image(), max(t, 0.0), shot, "first" if prev is None else "cut")
                    last_kf_t = t
                else:
                    # Per frame interval: frames apart by two or three skipped ones show motion that much
                    # larger, and must not look like a cut for it.
                    step = max(1.0, (t - prev_t) * fps)
                    change = float(np.mean(np.abs(thumb - prev) > CELL_DIFF)) / step
                    cut = change >= params.cut_threshold and change >= params.cut_ratio * baseline
                    baseline = 0.9 * baseline + 0.1 * change
                    if cut:
                        shot += 1
                        pending_cut = True
                    since = t - last_kf_t
                    if pending_cut and since >= params.min_gap_s:
                        writer.add(frame.to_image(), t, shot, "cut")
                        last_kf_t, pending_cut = t, False
                    elif since >= params.max_gap_s:
                        writer.add(frame.to_image(), t, shot, "gap")
                        last_kf_t = t
                prev, prev_t = thumb, t
                if progress and declared_duration_s and t / declared_duration_s >= next_report:
                    progress(min(t / declared_duration_s, 1.0))
                    next_report += 0.1
    except StopIteration:
        raise MediaRejected(path, "no video stream to take keyframes from") from None
    except av.error.FFmpegError as exc:
        raise MediaRejected(
            path, f"video is corrupt or truncated: decoding failed at {t:.1f} s ({exc.strerror or exc})"
        ) from exc
    if n_frames == 0:
        raise MediaRejected(path, "video stream has no decodable frames (corrupt or truncated)")
    if declared_duration_s and declared_duration_s > 2 and t < 0.8 * declared_duration_s - 1:
        raise MediaRejected(
            path,
            f"video is truncated: frames end at {t:.1f} s but the container declares {declared_duration_s:.1f} s",
        )
    return writer.frames


def image_keyframe(path: Path, out_dir: Path, params: KeyframeParams, final_dir: Path | None = None) -> list[Keyframe]:
    """An image is its own single keyframe (upright per EXIF, first frame of an animation).

    Only decoding errors reject the image: an error writing the JPEG (a full disk) is the store's
    and propagates as it is."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            upright = ImageOps.exif_transpose(img) or img
            upright.load()
            rgb = upright.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaRejected(path, f"image cannot be decoded: {exc}") from exc
    writer = _Writer(out_dir, params, final_dir)
    writer.add(rgb, 0.0, 0, "image")
    return writer.frames
