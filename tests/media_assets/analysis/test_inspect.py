import time
from pathlib import Path

import pytest

from media_assets.analysis.inspect import Limits, MediaRejected, inspect_media, sha256_of, sniff

GOOD = {
    "talk.mp4": ("video", "mp4"),
    "street.mkv": ("video", "matroska"),
    "clip.webm": ("video", "matroska"),
    "speech.mp3": ("audio", "mp3"),
    "german.ogg": ("audio", "ogg"),
    "astronaut.png": ("image", "png"),
    "messi5.jpg": ("image", "jpeg"),
    "chelsea.webp": ("image", "webp"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_sniff_and_probe_real_media(samples: dict[str, Path], name: str) -> None:
    kind, container = GOOD[name]
    assert sniff(samples[name])[1] in (container, "mpeg-audio")
    info = inspect_media(samples[name], Limits())
    assert info.kind == kind
    if kind == "image":
        assert info.width and info.height and info.duration_s is None
    else:
        assert info.duration_s and info.duration_s > 1
    if kind == "video":
        assert info.width and info.height and info.fps and info.video_codec


def test_type_comes_from_bytes_not_the_name(samples: dict[str, Path], tmp_path: Path) -> None:
    disguised = tmp_path / "holiday.mp3"
    disguised.write_bytes(samples["astronaut.png"].read_bytes())
    assert inspect_media(disguised, Limits()).kind == "image"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty", "empty file"),
        ("text_as_jpg", "text"),
        ("random_as_wav", "noise.wav"),
        ("truncated_video", "truncated.mp4"),
        ("pixel_bomb", "40000x40000"),
    ],
)
def test_bad_input_is_refused_with_file_and_reason(bad_inputs: dict[str, Path], case: str, needle: str) -> None:
    with pytest.raises(MediaRejected) as err:
        inspect_media(bad_inputs[case], Limits())
    message = str(err.value)
    assert bad_inputs[case].name in message
    assert needle in message


def test_pixel_bomb_is_refused_from_the_header_alone(bad_inputs: dict[str, Path]) -> None:
    started = time.perf_counter()
    with pytest.raises(MediaRejected, match="refused before decoding"):
        inspect_media(bad_inputs["pixel_bomb"], Limits())
    assert time.perf_counter() - started < 2  # a decode of 1.6 GP would take far longer


def test_limits(samples: dict[str, Path]) -> None:
    with pytest.raises(MediaRejected, match="limit"):
        inspect_media(samples["talk.mp4"], Limits(max_duration_s=5))
    with pytest.raises(MediaRejected, match="MB limit"):
        inspect_media(samples["talk.mp4"], Limits(max_size_mb=0.001))
    with pytest.raises(MediaRejected, match="MP limit"):
        inspect_media(samples["astronaut.png"], Limits(max_image_pixels=1000))
    with pytest.raises(MediaRejected, match="pixel limit"):
        inspect_media(samples["talk.mp4"], Limits(max_video_pixels=1000))


@pytest.mark.parametrize("case", ["unicode_name", "dotdot_name", "spaces_name"])
def test_odd_names_are_fine(bad_inputs: dict[str, Path], case: str) -> None:
    assert inspect_media(bad_inputs[case], Limits()).kind in ("image", "audio")


def test_sha256_is_of_the_bytes(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert sha256_of(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
