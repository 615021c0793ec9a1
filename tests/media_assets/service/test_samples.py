"""The generated sample media are what the rest of the suite assumes: right streams, sizes, durations.

Uses the session-wide `samples` / `bad_inputs` fixtures of tests/conftest.py, so the set is generated
once for the whole run.
"""

from __future__ import annotations

import struct
import time
import wave
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from media_assets.service import samples as samples_mod
from media_assets.service.samples import generate_samples, speak

SAMPLE_NAMES = {
    "talk.mp4",
    "street.mkv",
    "clip.webm",
    "speech.mp3",
    "german.ogg",
    "astronaut.png",
    "messi5.jpg",
    "chelsea.webp",
    "basketball.png",
}
BAD_CASES = {
    "empty",
    "text_as_jpg",
    "random_as_wav",
    "truncated_video",
    "truncated_mkv",
    "pixel_bomb",
    "unicode_name",
    "dotdot_name",
    "spaces_name",
}


def streams(path: Path) -> tuple[list[tuple[str, int, int, str, float]], list[str], float]:
    """(codec, width, height, pixel format, fps) per video stream, codec per audio stream, duration in s."""
    with av.open(str(path)) as c:
        assert c.duration is not None, path
        video = [
            (s.codec.canonical_name, s.width, s.height, s.format.name, float(s.average_rate or 0))
            for s in c.streams.video
        ]
        return video, [s.codec.canonical_name for s in c.streams.audio], c.duration / av.time_base


def test_sample_set_is_complete_and_flat(samples: dict[str, Path]) -> None:
    assert set(samples) == SAMPLE_NAMES
    folder = {p.parent for p in samples.values()}
    assert len(folder) == 1
    assert all(p.is_file() and 0 < p.stat().st_size < 2_000_000 for p in samples.values())
    assert not [p for p in next(iter(folder)).iterdir() if ".part" in p.name]  # no leftovers


def test_generate_samples_is_idempotent(samples: dict[str, Path]) -> None:
    folder = samples["talk.mp4"].parent
    before = {p: p.stat().st_mtime_ns for p in samples.values()}
    started = time.perf_counter()
    again = generate_samples(folder)
    assert time.perf_counter() - started < 2  # nothing regenerated
    assert {p.name: p for p in again} == samples
    assert {p: p.stat().st_mtime_ns for p in again} == before


def test_talk(samples: dict[str, Path]) -> None:
    video, audio, duration = streams(samples["talk.mp4"])
    assert len(video) == 1 and len(audio) == 1
    assert video == [("h264", 1280, 720, "yuv420p", 25.0)]
    assert audio == ["aac"]
    assert 20 <= duration <= 30


def test_talk_has_four_slides_and_speech_on_each(samples: dict[str, Path]) -> None:
    band: list[tuple[float, float]] = []  # (t, mean luma of the coloured title band)
    with av.open(str(samples["talk.mp4"])) as c:
        c.streams.video[0].thread_type = "AUTO"
        for f in c.decode(video=0):
            y = np.frombuffer(memoryview(f.planes[0]), np.uint8).reshape(-1, f.planes[0].line_size)
            band.append((float(f.time or 0.0), float(y[10:130, :1280].mean())))
    cuts = [t for (_, a), (t, b) in zip(band, band[1:], strict=False) if abs(a - b) > 20]
    assert len(cuts) == 3
    assert all(abs(t - s) < 0.2 for t, s in zip(cuts, (6, 12, 18), strict=True))

    with av.open(str(samples["talk.mp4"])) as c:
        rate = c.streams.audio[0].rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])  # fltp mono
    for slide in range(4):  # narration starts with each slide, then silence pads it to 6 s
        spoken = pcm[slide * 6 * rate : (slide * 6 + 3) * rate]
        assert np.sqrt(np.mean(spoken**2)) > 0.01, slide


def test_street_has_video_and_no_audio(samples: dict[str, Path]) -> None:
    video, audio, duration = streams(samples["street.mkv"])
    assert len(video) == 1 and not audio
    assert video[0][0] == "h264"
    assert 7 <= duration <= 9


def test_clip_webm(samples: dict[str, Path]) -> None:
    video, audio, duration = streams(samples["clip.webm"])
    assert len(video) == 1 and len(audio) == 1
    assert video[0][0] in ("vp9", "vp8")
    assert audio == ["opus"]
    assert 4.5 <= duration <= 5.5


@pytest.mark.parametrize(("name", "codec", "low", "high"), [("speech.mp3", "mp3", 8, 12), ("german.ogg", "opus", 2, 8)])
def test_speech_is_audio_only(samples: dict[str, Path], name: str, codec: str, low: float, high: float) -> None:
    video, audio, duration = streams(samples[name])
    assert not video
    assert audio == [codec]
    assert low <= duration <= high


@pytest.mark.parametrize(
    ("name", "fmt", "size"),
    [
        ("astronaut.png", "PNG", (512, 512)),
        ("messi5.jpg", "JPEG", None),
        ("chelsea.webp", "WEBP", (451, 300)),
        ("basketball.png", "PNG", None),
    ],
)
def test_images(samples: dict[str, Path], name: str, fmt: str, size: tuple[int, int] | None) -> None:
    with Image.open(samples[name]) as img:
        assert img.format == fmt
        img.load()
        assert size is None or img.size == size


def test_bad_inputs_cases(bad_inputs: dict[str, Path]) -> None:
    assert set(bad_inputs) == BAD_CASES
    assert len({p.parent for p in bad_inputs.values()}) == 1
    assert all(p.is_file() for p in bad_inputs.values())
    assert bad_inputs["empty"].name == "empty.mp4" and bad_inputs["empty"].stat().st_size == 0
    assert bad_inputs["unicode_name"].name == "über café (final).jpg"
    assert bad_inputs["dotdot_name"].name == "..weird..name...png"
    assert bad_inputs["spaces_name"].name == "my recording 01.wav"


def test_misnamed_files_are_not_media(bad_inputs: dict[str, Path]) -> None:
    text = bad_inputs["text_as_jpg"]
    assert text.suffix == ".jpg" and "crane" in text.read_text(encoding="utf-8")
    with pytest.raises(UnidentifiedImageError):
        Image.open(text)
    noise = bad_inputs["random_as_wav"]
    assert noise.suffix == ".wav" and noise.stat().st_size == 64 * 1024
    with pytest.raises(av.error.FFmpegError):
        av.open(str(noise))


def test_truncated_mp4_cannot_be_opened(bad_inputs: dict[str, Path]) -> None:
    with pytest.raises(av.error.FFmpegError):
        av.open(str(bad_inputs["truncated_video"]))


def test_truncated_mkv_opens_but_ends_early(bad_inputs: dict[str, Path]) -> None:
    with av.open(str(bad_inputs["truncated_mkv"])) as c:
        assert c.duration is not None and c.duration / av.time_base >= 9  # the header still says 10 s
        last = 0.0
        try:
            for f in c.decode(video=0):
                last = float(f.time or 0.0)
        except av.error.FFmpegError:
            pass  # a decoder may also stop on the cut frame
    assert 1 < last < 8


def test_pixel_bomb_is_a_valid_small_png(bad_inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = bad_inputs["pixel_bomb"]
    assert path.stat().st_size < 5_000_000
    with pytest.raises(Image.DecompressionBombError):  # Pillow's own guard fires on the header
        Image.open(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(path) as img:  # reads the header only
        assert img.size == (40000, 40000) and img.mode == "L"

    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat = 8, [], bytearray()
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind, payload = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        kinds.append(kind)
        if kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    # The stream ends with the Adler-32 of all 40000 rows of (filter byte + 40000 zero pixels):
    # for n zero bytes that is (n mod 65521) << 16 | 1, so every row really went into it.
    n = 40000 * 40001
    assert struct.unpack(">I", idat[-4:])[0] == (n % 65521) << 16 | 1
    head = zlib.decompressobj().decompress(bytes(idat[:4096]), 1 << 20)
    assert len(head) > 0 and not any(head)


def test_odd_names_are_valid_media(bad_inputs: dict[str, Path]) -> None:
    with Image.open(bad_inputs["unicode_name"]) as img:
        assert img.format == "JPEG"
    with Image.open(bad_inputs["dotdot_name"]) as img:
        assert img.format == "PNG"
    with wave.open(str(bad_inputs["spaces_name"])) as w:
        assert w.getnframes() / w.getframerate() > 0.5


def test_speak_writes_a_wav(tmp_path: Path) -> None:
    out = speak("Der Kran ist außer Betrieb.", tmp_path / "de.wav", voice="de")
    with wave.open(str(out)) as w:
        assert w.getnchannels() == 1 and w.getnframes() / w.getframerate() > 1


def test_require_tools_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    samples_mod.require_tools()  # all present here
    monkeypatch.setattr(samples_mod.shutil, "which", lambda _tool: None)
    monkeypatch.setattr(samples_mod, "FONT", tmp_path / "missing.ttf")
    with pytest.raises(RuntimeError) as err:
        samples_mod.require_tools()
    for needle in ("ffmpeg", "apt-get install espeak-ng", "fonts-dejavu-core"):
        assert needle in str(err.value)
