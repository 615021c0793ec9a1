"""Generate the sample media for the demo and the tests from package-shipped sources.

We commit no media: photos come from scikit-image and Debian's opencv-doc, speech from espeak-ng,
slides are rendered with Pillow, and ffmpeg encodes and muxes. Output is small, quick to make
(a few seconds on two cores) and deterministic: the same text, pixels and encoder settings every time.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import struct
import subprocess
import tempfile
import wave
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

TALK_SIZE = (1280, 720)
SLIDE_S = 6  # seconds per slide: talk.mp4 is len(SLIDES) * SLIDE_S long
# (slide text, narration spoken while it is shown, colour of its title band). The bands differ a lot in
# luma so every slide change is an unmistakable shot change, not just a few changed text pixels.
SLIDES = [
    ("Quarterly results", "Welcome to the quarterly results review. Revenue grew by four percent.", (20, 40, 90)),
    ("Crane offline at pier 4", "The crane at pier four is offline until Friday. Please use pier two.", (240, 150, 30)),
    ("Safety first: wear helmets", "Safety first. Wear helmets on the quay at all times.", (20, 100, 50)),
    ("Größe und Übermaß: schöne Grüße", "Thank you for listening. Greetings to the team in Hamburg.", (200, 60, 160)),
]
SPEECH = (
    "Good morning. This is a short recording about the harbour. "
    "The crane at pier four is offline today, so ships are unloaded at pier two."
)
GERMAN = "Guten Morgen. Der Kran am Pier vier ist außer Betrieb."
CLIP_SENTENCE = "An astronaut, and then a cat."
# Pillow's basic layout: no ligatures ("ffl" in "offline" stays three letters for OCR) and the same
# rendering whether or not libraqm is installed.
BASIC = ImageFont.Layout.BASIC


def require_tools() -> None:
    """Fail early with the Debian package to install, instead of a cryptic subprocess error later."""
    missing = [
        f"{tool} (apt-get install {pkg})"
        for tool, pkg in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng"))
        if shutil.which(tool) is None
    ]
    if not FONT.exists():
        missing.append(f"font {FONT} (apt-get install fonts-dejavu-core)")
    if not (OPENCV_DATA / "messi5.jpg").exists():
        missing.append(f"{OPENCV_DATA}/messi5.jpg (apt-get install opencv-doc)")
    if missing:
        raise RuntimeError("generating sample media needs: " + ", ".join(missing))


def _run(*cmd: str) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:  # surface the tool's own message
        raise RuntimeError(f"{cmd[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from exc


def _ffmpeg(*args: str) -> None:
    # -bitexact keeps encoder versions and random muxer ids (Matroska SegmentUID) out of the files,
    # so regenerated samples have the same bytes and thus the same content hash / partition key.
    _run("ffmpeg", "-y", "-loglevel", "error", "-nostdin", *args[:-1], "-fflags", "+bitexact", args[-1])


def speak(text: str, out_wav: Path, voice: str = "en") -> Path:
    """Synthesise speech offline with espeak-ng (deterministic for a given text and voice)."""
    _run("espeak-ng", "-v", voice, "-s", "150", "-w", str(out_wav), text)
    return out_wav


def _opencv(name: str) -> Path:
    """A file of Debian's opencv-doc examples, decompressing a `.gz` copy when that is what ships."""
    plain = OPENCV_DATA / name
    if plain.exists():
        return plain
    packed = OPENCV_DATA / f"{name}.gz"
    if not packed.exists():
        raise FileNotFoundError(f"{plain} not found (apt-get install opencv-doc)")
    out = Path(tempfile.gettempdir()) / f"medialens-{name}"
    if not out.exists():
        part = out.with_name(f"{out.name}.{os.getpid()}.part")  # concurrent test workers: rename is atomic
        with gzip.open(packed) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        part.replace(out)
    return out


def render_slide(
    text: str, band: tuple[int, int, int], path: Path, size_px: tuple[int, int], page: str | None = None
) -> None:
    """White slide with large black centred text (OCR-friendly) under a coloured title band, with
    the page number in the band when given."""
    w, h = size_px
    img = Image.new("RGB", size_px, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, w, 140), fill=band)
    if page is not None:
        small = ImageFont.truetype(str(FONT), 40, layout_engine=BASIC)
        draw.text((40, 50), page, fill="white", font=small)
    size = 80
    while True:  # largest size that fits with a margin
        font = ImageFont.truetype(str(FONT), size, layout_engine=BASIC)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= w - 120 or size <= 24:
            break
        size -= 4
    draw.text(((w - (right - left)) // 2 - left, 140 + (h - 140 - (bottom - top)) // 2 - top), text, "black", font)
    img.save(path)


Slide = tuple[str, str, tuple[int, int, int]]  # (text shown, narration spoken meanwhile, band colour)


def narrated_slides(out: Path, work: Path, slides: Sequence[Slide], slide_s: int, size: tuple[int, int]) -> None:
    """A slide talk: each slide shown `slide_s` seconds with its page number, its narration padded
    (or cut) to the slide so speech lines up with it; H.264 + AAC. Shot changes, printed text and
    speech in one file (the sample talk, and bench/realtime.py's 5-minute one)."""
    lines = []
    narration = work / "narration.wav"
    with wave.open(str(narration), "wb") as dst:
        for i, (text, sentence, band) in enumerate(slides):
            png = work / f"slide{i}.png"
            render_slide(text, band, png, size, page=f"{i + 1} / {len(slides)}")
            lines += [f"file '{png}'", f"duration {slide_s}"]
            with wave.open(str(speak(sentence, work / f"say{i}.wav"))) as src:
                if i == 0:
                    dst.setparams(src.getparams())
                n = src.getframerate() * slide_s
                pcm = src.readframes(n)
                width = src.getsampwidth() * src.getnchannels()
            dst.writeframes(pcm + b"\0" * (n * width - len(pcm)))
    lines.append(lines[-2])  # the concat demuxer ignores the last duration unless the file is repeated
    concat = work / "slides.txt"
    concat.write_text("\n".join(lines) + "\n")
    _ffmpeg(
        "-f", "concat", "-safe", "0", "-i", str(concat), "-i", str(narration),
        "-map", "0:v", "-map", "1:a", "-r", "25", "-t", str(slide_s * len(slides)),
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-ar", "44100", "-movflags", "+faststart", str(out),
    )  # fmt: skip


def _talk(out: Path, work: Path) -> None:
    """Four slides with narration: shot changes, printed text and speech in one file."""
    narrated_slides(out, work, [(text, said, band) for text, said, band in SLIDES], SLIDE_S, TALK_SIZE)


def _street(out: Path, work: Path) -> None:
    """Pedestrians from opencv-doc's vtest.avi: real motion, no audio track."""
    _ffmpeg("-i", str(_opencv("vtest.avi")), "-t", "8", "-an", "-c:v", "libx264", "-preset", "veryfast",
            "-pix_fmt", "yuv420p", str(out))  # fmt: skip


def _clip(out: Path, work: Path) -> None:
    """Astronaut then cat with a spoken sentence: VP9 + Opus in WebM."""
    from skimage import data

    Image.fromarray(data.astronaut()).resize((512, 512)).save(work / "astronaut.png")
    Image.fromarray(data.chelsea()).resize((512, 512)).save(work / "chelsea.png")
    voice = speak(CLIP_SENTENCE, work / "clip.wav")
    _ffmpeg(
        "-loop", "1", "-framerate", "25", "-t", "2.5", "-i", str(work / "astronaut.png"),
        "-loop", "1", "-framerate", "25", "-t", "2.5", "-i", str(work / "chelsea.png"), "-i", str(voice),
        "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v];[2:a]apad=whole_dur=5[s]",
        "-map", "[v]", "-map", "[s]", "-t", "5",
        "-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8",
        "-c:a", "libopus", "-b:a", "48k", str(out),
    )  # fmt: skip


def _speech(out: Path, work: Path) -> None:
    _ffmpeg("-i", str(speak(SPEECH, work / "speech.wav")), "-c:a", "libmp3lame", "-b:a", "64k", str(out))


def _german(out: Path, work: Path) -> None:
    _ffmpeg("-i", str(speak(GERMAN, work / "german.wav", voice="de")), "-c:a", "libopus", "-b:a", "32k", str(out))


def _astronaut(out: Path, work: Path) -> None:
    from skimage import data

    Image.fromarray(data.astronaut()).save(out)


def _chelsea(out: Path, work: Path) -> None:
    from skimage import data

    Image.fromarray(data.chelsea()).save(out, "WEBP", quality=85)


Maker = Callable[[Path, Path], object]  # (output file, private scratch folder)


def _copy(name: str) -> Maker:
    return lambda out, work: shutil.copyfile(_opencv(name), out)


SAMPLES: dict[str, Maker] = {
    "talk.mp4": _talk,
    "street.mkv": _street,
    "clip.webm": _clip,
    "speech.mp3": _speech,
    "german.ogg": _german,
    "astronaut.png": _astronaut,
    "messi5.jpg": _copy("messi5.jpg"),
    "chelsea.webp": _chelsea,
    "basketball.png": _copy("basketball1.png"),
}


def generate_samples(out_dir: Path) -> list[Path]:
    """Create the demo/test media set in out_dir; files that already exist are kept. Returns all paths."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="medialens-samples-") as tmp:
        for name, make in SAMPLES.items():
            path = out_dir / name
            paths.append(path)
            if path.exists():
                continue
            # Write under a temporary name (same suffix: ffmpeg picks the format from it) and rename, so
            # an interrupted run never leaves a half-written file that a later run would skip as done.
            part = out_dir / f".{path.stem}.part{path.suffix}"
            work = Path(tmp) / path.stem
            work.mkdir()
            try:
                make(part, work)
                part.replace(path)
            finally:
                part.unlink(missing_ok=True)
    return paths


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_pixel_bomb(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A well-formed 8-bit greyscale PNG of width x height black pixels: ~1.6 MB on disk, 1.6 GB decoded.

    Streamed row by row into IDAT chunks, so making it needs neither the image nor its compressed data
    in memory; Z_RLE finds the same runs of zeros as the default strategy at twice the speed (~3 s).
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    row = b"\0" * (width + 1)  # filter byte 0 + one byte per pixel
    with path.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        buf = bytearray()
        for _ in range(height):
            buf += comp.compress(row)
            if len(buf) >= 1 << 18:
                fh.write(_png_chunk(b"IDAT", bytes(buf)))
                buf.clear()
        buf += comp.flush()
        fh.write(_png_chunk(b"IDAT", bytes(buf)))
        fh.write(_png_chunk(b"IEND", b""))
    return path


def generate_bad_inputs(out_dir: Path) -> dict[str, Path]:
    """One file per kind of bad (or merely oddly named) input the platform must refuse or cope with."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    from skimage import data

    cases: dict[str, Path] = {}

    def case(key: str, name: str) -> Path:
        cases[key] = out_dir / name
        return cases[key]

    case("empty", "empty.mp4").write_bytes(b"")
    case("text_as_jpg", "notes.jpg").write_text(
        "Meeting notes: the crane is offline.\nThis is not a picture. Größe.\n", encoding="utf-8"
    )
    case("random_as_wav", "noise.wav").write_bytes(random.Random(7).randbytes(64 * 1024))

    with tempfile.TemporaryDirectory(prefix="medialens-bad-") as tmp:
        work = Path(tmp)
        # No +faststart: the moov index is written at the end, so the first 40% has no index at all.
        full_mp4 = work / "full.mp4"
        _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=6:size=320x240:rate=25", "-f", "lavfi",
                "-i", "sine=duration=6", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-shortest", str(full_mp4))  # fmt: skip
        raw = full_mp4.read_bytes()
        case("truncated_video", "truncated.mp4").write_bytes(raw[: int(len(raw) * 0.4)])

        # Matroska's header (and its 10 s duration) comes first: the cut file opens, then ends at ~6 s.
        full_mkv = work / "full.mkv"
        _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=10:size=320x240:rate=25",
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(full_mkv))  # fmt: skip
        raw = full_mkv.read_bytes()
        case("truncated_mkv", "truncated.mkv").write_bytes(raw[: int(len(raw) * 0.6)])

        write_pixel_bomb(case("pixel_bomb", "bomb.png"))
        Image.fromarray(data.coffee()).save(case("unicode_name", "über café (final).jpg"), quality=85)
        Image.fromarray(data.camera()).resize((128, 128)).save(case("dotdot_name", "..weird..name...png"))
        _ffmpeg("-i", str(speak("One two three.", work / "s.wav")), "-ar", "22050",
                str(case("spaces_name", "my recording 01.wav")))  # fmt: skip
    return cases
