"""Decide whether a file is media we can analyse, and what it is, before anything decodes it.

The type comes from the bytes, never the extension; limits are enforced from headers alone, so a
pixel bomb or a multi-hour upload is refused in milliseconds. Used by the upload sensor (to refuse
early), the CLI and the `media_file` asset (to re-check the stored copy).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
from PIL import Image

from media_assets.analysis.params import known_fields


class MediaRejected(ValueError):
    """A file that is not media we accept; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{Path(path).name}: {reason}")
        self.path = str(path)
        self.reason = reason

    def naming(self, source_name: str) -> MediaRejected:
        """The same refusal, naming the user's file rather than our stored copy."""
        return MediaRejected(source_name, self.reason)


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what we ingest (config `media_file:`)."""

    max_size_mb: float = 8192
    max_duration_s: float = 6 * 3600
    max_image_pixels: int = 100_000_000
    max_video_pixels: int = 8192 * 4320

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Limits:
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learns from the headers: enough to plan decoding and to show the user."""

    kind: str  # "video" | "image" | "audio"
    container: str
    size_bytes: int
    duration_s: float | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    streams: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Leading bytes -> (family, container). Families: "image" (decoded with Pillow) or "av" (PyAV).
_MAGIC: list[tuple[int, bytes, str, str]] = [
    (0, b"\xff\xd8\xff", "image", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "png"),
    (0, b"GIF87a", "image", "gif"),
    (0, b"GIF89a", "image", "gif"),
    (0, b"BM", "image", "bmp"),
    (0, b"II*\x00", "image", "tiff"),
    (0, b"MM\x00*", "image", "tiff"),
    (0, b"\x1a\x45\xdf\xa3", "av", "matroska"),
    (0, b"OggS", "av", "ogg"),
    (0, b"fLaC", "av", "flac"),
    (0, b"ID3", "av", "mp3"),
    (0, b"FLV", "av", "flv"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "av", "asf"),
    (0, b"\x00\x00\x01\xba", "av", "mpeg"),
    (0, b"#!AMR", "av", "amr"),
]
_RIFF = {b"WEBP": ("image", "webp"), b"WAVE": ("av", "wav"), b"AVI ": ("av", "avi")}
_PIL_LIMIT_LOCK = threading.Lock()
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"}


def sniff(path: Path) -> tuple[str, str]:
    """Return (family, container) from the file's first bytes, or raise MediaRejected."""
    with path.open("rb") as fh:
        head = fh.read(512)
    if not head:
        raise MediaRejected(path, "empty file (0 bytes)")
    for offset, magic, family, container in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return family, container
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return ("image", "heif") if head[8:12] in _IMAGE_BRANDS else ("av", "mp4")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync (mp3 without ID3) or ADTS AAC; confirmed by the probe.
        return "av", "mpeg-audio"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "av", "mpegts"
    if _looks_like_text(head):
        raise MediaRejected(path, f"not a media file: it contains text (starts with {head[:24]!r})")
    raise MediaRejected(path, f"unrecognised file type (first bytes {head[:8].hex(' ')})")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash used for partition keys, dedupe and the content-addressed store."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_media(path: Path, limits: Limits) -> MediaInfo:
    """Sniff, probe and check limits; raise MediaRejected naming the file and the reason."""
    if not path.is_file():
        raise MediaRejected(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected(path, "empty file (0 bytes)")
    if size > limits.max_size_mb * 1024 * 1024:
        raise MediaRejected(path, f"file is {size / 2**20:.0f} MB, over the {limits.max_size_mb:.0f} MB limit")
    family, container = sniff(path)
    if family == "image":
        info = _probe_image(path, container, size, limits)
        if info is not None:
            return info
        # Pillow cannot read it (e.g. AVIF/HEIF without a plugin): let libav try.
    return _probe_av(path, container, size, limits)


def _probe_image(path: Path, container: str, size: int, limits: Limits) -> MediaInfo | None:
    # Pillow's own bomb check would raise before we learn the size; ours follows right after, from
    # the header alone, with a message that says what the limit is and how to change it.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as img:  # reads the header only
                width, height = img.size
                fmt = (img.format or container).lower()
                frames = getattr(img, "n_frames", 1)
        except (OSError, SyntaxError, ValueError) as exc:
            if container in ("heif",):
                return None
            raise MediaRejected(path, f"unreadable {container} image: {exc}") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    pixels = width * height
    if pixels > limits.max_image_pixels:
        raise MediaRejected(
            path,
            f"image is {width}x{height} = {pixels / 1e6:.0f} MP, over the "
            f"{limits.max_image_pixels / 1e6:.0f} MP limit (refused before decoding; media_file.max_image_pixels)",
        )
    if width == 0 or height == 0:
        raise MediaRejected(path, f"image has no pixels ({width}x{height})")
    return MediaInfo(
        kind="image",
        container=fmt,
        size_bytes=size,
        duration_s=None,
        width=width,
        height=height,
        streams=[{"type": "image", "format": fmt, "width": width, "height": height, "frames": frames}],
    )


def _probe_av(path: Path, container: str, size: int, limits: Limits) -> MediaInfo:
    try:
        with av.open(str(path), metadata_errors="ignore") as cont:
            streams: list[dict[str, Any]] = []
            video: av.VideoStream | None = None
            audio: av.AudioStream | None = None
            for vs in cont.streams.video:
                attached = bool(vs.disposition & av.stream.Disposition.attached_pic)  # cover art
                rate = vs.average_rate or vs.guessed_rate
                streams.append(
                    {
                        "index": vs.index,
                        "type": "video",
                        "codec": vs.codec_context.name,
                        "width": vs.codec_context.width,
                        "height": vs.codec_context.height,
                        "fps": float(rate) if rate else None,
                        "attached_pic": attached,
                    }
                )
                if video is None and not attached:
                    video = vs
            for aus in cont.streams.audio:
                streams.append(
                    {
                        "index": aus.index,
                        "type": "audio",
                        "codec": aus.codec_context.name,
                        "sample_rate": aus.codec_context.sample_rate,
                        "channels": aus.codec_context.channels,
                    }
                )
                audio = audio or aus
            duration = _duration_s(cont, video or audio)
            fmt = cont.format.name
    except av.error.FFmpegError as exc:
        raise MediaRejected(path, f"not readable as {container} media: {exc.strerror or exc}") from exc
    if video is None and audio is None:
        raise MediaRejected(path, f"{container} file has no video or audio stream")
    if duration is not None and duration > limits.max_duration_s:
        raise MediaRejected(
            path, f"duration {duration / 60:.0f} min is over the {limits.max_duration_s / 60:.0f} min limit"
        )
    width = height = None
    fps = None
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        if not width or not height:
            raise MediaRejected(path, "video stream has no frame size (corrupt header?)")
        if width * height > limits.max_video_pixels:
            raise MediaRejected(
                path, f"video frames are {width}x{height}, over the {limits.max_video_pixels} pixel limit"
            )
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
    return MediaInfo(
        kind="video" if video is not None else "audio",
        container=fmt,
        size_bytes=size,
        duration_s=duration,
        width=width,
        height=height,
        fps=fps,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        channels=audio.codec_context.channels if audio is not None else None,
        streams=streams,
    )


def _duration_s(cont: av.container.InputContainer, stream: av.VideoStream | av.AudioStream | None) -> float | None:
    if cont.duration is not None and cont.duration > 0:
        return cont.duration / av.time_base
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None
