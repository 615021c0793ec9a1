"""Generate the sample media for the demo and the tests from package-shipped sources.

We commit no media: photos come from scikit-image and Debian's opencv-doc, speech from espeak-ng,
slides are rendered with Pillow, and ffmpeg muxes them. Output is deterministic and small.
"""

from __future__ import annotations

import gzip
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

SLIDES = [
    "Quarterly results",
    "Crane offline at pier 4",
    "Safety first: wear helmets",
    "Größe und Übermaß: schöne Grüße",
]
NARRATION = (
    "Welcome to the quarterly review. The crane at pier four is offline until Friday. "
    "Please wear helmets on the quay at all times. Thank you for listening."
)
SPEECH = "Good morning. This is a short recording about the harbour. The crane at pier four is offline today."
GERMAN = "Guten Morgen. Der Kran am Pier vier ist außer Betrieb."


def require_tools() -> None:
    """Fail early, naming the Debian package, when a generator tool is missing."""
    missing = [
        f"{tool} (apt-get install {pkg})"
        for tool, pkg in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng"))
        if shutil.which(tool) is None
    ]
    if not FONT.exists():
        missing.append(f"{FONT} (apt-get install fonts-dejavu-core)")
    if not (OPENCV_DATA / "messi5.jpg").exists():
        missing.append(f"{OPENCV_DATA}/messi5.jpg (apt-get install opencv-doc)")
    if missing:
        raise RuntimeError("sample media need: " + ", ".join(missing))


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _ffmpeg(*args: str) -> None:
    _run("ffmpeg", "-y", "-loglevel", "error", "-nostdin", *args)


def speak(text: str, out_wav: Path, voice: str = "en") -> Path:
    """Synthesise speech with espeak-ng (deterministic for a given text and voice)."""
    _run("espeak-ng", "-v", voice, "-s", "150", "-w", str(out_wav), text)
    return out_wav


def _opencv(name: str) -> Path:
    """A file of Debian's opencv-doc examples, decompressing a `.gz` copy when that is what ships."""
    plain = OPENCV_DATA / name
    if plain.exists():
        return plain
    packed = OPENCV_DATA / f"{name}.gz"
    if packed.exists():
        out = Path(tempfile.gettempdir()) / f"medialens-{name}"
        if not out.exists():
            with gzip.open(packed) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        return out
    raise FileNotFoundError(f"{plain} not found (apt-get install opencv-doc)")


def _slide(text: str, path: Path) -> None:
    img = Image.new("RGB", (1280, 720), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONT), 64)
    box = draw.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    draw.text(((1280 - w) // 2, (720 - h) // 2), text, fill="black", font=font)
    draw.rectangle((0, 680, 1280, 720), fill=(30, 60, 120))
    img.save(path)


def _talk(out: Path, work: Path) -> None:
    """Four slides of 6 s each with spoken narration: shot changes, text and speech in one file."""
    concat = work / "slides.txt"
    lines = []
    for i, text in enumerate(SLIDES):
        png = work / f"slide{i}.png"
        _slide(text, png)
        lines += [f"file '{png}'", "duration 6"]
    lines.append(f"file '{work / f'slide{len(SLIDES) - 1}.png'}'")  # concat demuxer needs the last again
    concat.write_text("\n".join(lines) + "\n")
    narration = speak(NARRATION, work / "narration.wav")
    _ffmpeg(
        "-f", "concat", "-safe", "0", "-i", str(concat), "-i", str(narration),
        "-filter_complex", "[1:a]apad=whole_dur=24[a]", "-map", "0:v", "-map", "[a]",
        "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-t", "24", "-movflags", "+faststart", str(out),
    )  # fmt: skip


def _street(out: Path) -> None:
    _ffmpeg("-i", str(_opencv("vtest.avi")), "-t", "8", "-an", "-c:v", "libx264", "-preset", "veryfast",
            "-pix_fmt", "yuv420p", str(out))  # fmt: skip


def _clip(out: Path, work: Path) -> None:
    """Astronaut then cat, with a spoken sentence: VP9 + Opus in WebM."""
    from skimage import data

    Image.fromarray(data.astronaut()).save(work / "astronaut.png")
    Image.fromarray(data.chelsea()).resize((512, 512)).save(work / "chelsea.png")
    voice = speak("An astronaut, and then a cat.", work / "clip.wav")
    _ffmpeg(
        "-loop", "1", "-t", "2.5", "-i", str(work / "astronaut.png"),
        "-loop", "1", "-t", "2.5", "-i", str(work / "chelsea.png"), "-i", str(voice),
        "-filter_complex",
        "[0:v]scale=512:512,setsar=1,fps=25[a];[1:v]scale=512:512,setsar=1,fps=25[b];"
        "[a][b]concat=n=2:v=1:a=0,format=yuv420p[v];[2:a]apad=whole_dur=5[s]",
        "-map", "[v]", "-map", "[s]", "-t", "5",
        "-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8",
        "-c:a", "libopus", "-b:a", "48k", str(out),
    )  # fmt: skip


def generate_samples(out_dir: Path) -> list[Path]:
    """Create the demo/test media set in out_dir (files that exist are kept). Returns their paths."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    from skimage import data

    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="medialens-samples-") as tmp:
        work = Path(tmp)

        def want(name: str) -> Path | None:
            path = out_dir / name
            made.append(path)
            return None if path.exists() else path

        if p := want("talk.mp4"):
            _talk(p, work)
        if p := want("street.mkv"):
            _street(p)
        if p := want("clip.webm"):
            _clip(p, work)
        if p := want("speech.mp3"):
            _ffmpeg("-i", str(speak(SPEECH, work / "speech.wav")), "-c:a", "libmp3lame", "-b:a", "64k", str(p))
        if p := want("german.ogg"):
            _ffmpeg("-i", str(speak(GERMAN, work / "german.wav", voice="de")), "-c:a", "libopus", "-b:a", "32k", str(p))
        if p := want("astronaut.png"):
            Image.fromarray(data.astronaut()).save(p)
        if p := want("messi5.jpg"):
            shutil.copyfile(_opencv("messi5.jpg"), p)
        if p := want("chelsea.webp"):
            Image.fromarray(data.chelsea()).save(p, "WEBP", quality=85)
        if p := want("basketball.png"):
            shutil.copyfile(_opencv("basketball1.png"), p)
    return made


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def write_pixel_bomb(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A well-formed greyscale PNG of width x height zero pixels, ~1.6 MB on disk, streamed."""
    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    parts = []
    for _ in range(height):
        out = comp.compress(row)
        if out:
            parts.append(out)
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with path.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(_png_chunk(b"IHDR", ihdr))
        fh.write(_png_chunk(b"IDAT", b"".join(parts)))
        fh.write(_png_chunk(b"IEND", b""))
    return path


def generate_bad_inputs(out_dir: Path) -> dict[str, Path]:
    """One file per kind of bad (or merely odd) input the platform must handle."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    from skimage import data

    cases: dict[str, Path] = {}
    empty = out_dir / "empty.mp4"
    empty.write_bytes(b"")
    cases["empty"] = empty

    text = out_dir / "notes.jpg"
    text.write_text("Meeting notes: the crane is offline.\nThis is not a picture.\n", encoding="utf-8")
    cases["text_as_jpg"] = text

    noise = out_dir / "noise.wav"
    noise.write_bytes(random.Random(7).randbytes(64 * 1024))
    cases["random_as_wav"] = noise

    with tempfile.TemporaryDirectory(prefix="medialens-bad-") as tmp:
        work = Path(tmp)
        full_mp4 = work / "full.mp4"  # moov at the end (no faststart): a cut file has no index
        _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=6:size=320x240:rate=25", "-f", "lavfi",
                "-i", "sine=duration=6", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-shortest", str(full_mp4))  # fmt: skip
        data_mp4 = full_mp4.read_bytes()
        cases["truncated_video"] = out_dir / "truncated.mp4"
        cases["truncated_video"].write_bytes(data_mp4[: int(len(data_mp4) * 0.4)])

        full_mkv = work / "full.mkv"
        _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=10:size=320x240:rate=25",
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(full_mkv))  # fmt: skip
        data_mkv = full_mkv.read_bytes()
        cases["truncated_mkv"] = out_dir / "truncated.mkv"
        cases["truncated_mkv"].write_bytes(data_mkv[: int(len(data_mkv) * 0.6)])

        cases["pixel_bomb"] = write_pixel_bomb(out_dir / "bomb.png")

        unicode_name = out_dir / "über café (final).jpg"
        Image.fromarray(data.coffee()).save(unicode_name, quality=85)
        cases["unicode_name"] = unicode_name

        dotdot = out_dir / "..weird..name...png"
        Image.fromarray(data.camera()).resize((128, 128)).save(dotdot)
        cases["dotdot_name"] = dotdot

        spaces = out_dir / "my recording 01.wav"
        _ffmpeg("-i", str(speak("One two three.", work / "s.wav")), "-ar", "22050", str(spaces))
        cases["spaces_name"] = spaces
    return cases
