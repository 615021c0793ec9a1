from pathlib import Path

import pytest
from PIL import Image

from media_assets.analysis.inspect import Limits, MediaRejected, inspect_media
from media_assets.analysis.keyframes import (
    KeyframeParams,
    extract_video_keyframes,
    image_keyframe,
    keyframes_table,
)


def test_slide_changes_become_keyframes(samples: dict[str, Path], tmp_path: Path) -> None:
    talk = samples["talk.mp4"]
    info = inspect_media(talk, Limits())
    progress: list[float] = []
    frames = extract_video_keyframes(talk, tmp_path, KeyframeParams(), info.duration_s, progress.append)
    cuts = [f for f in frames if f.reason == "cut"]
    assert frames[0].reason == "first" and frames[0].t == 0.0
    assert len(cuts) >= 3  # four slides -> three changes
    assert len({f.shot for f in frames}) >= 4
    assert progress and progress[-1] >= 0.9
    for f in frames:
        with Image.open(f.path) as img:
            assert img.size == (f.width, f.height) == (1280, 720)
        assert f.sharpness > 0 and len(f.sha256) == 64
    # a keyframe at least every max_gap_s, and never two closer than min_gap_s
    ts = [f.t for f in frames]
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    assert max(gaps) <= 4.0 + 0.05 and min(gaps) >= 0.5 - 0.05


def test_max_gap_is_configurable(samples: dict[str, Path], tmp_path: Path) -> None:
    street = samples["street.mkv"]
    dense = extract_video_keyframes(street, tmp_path / "a", KeyframeParams(max_gap_s=1.0))
    sparse = extract_video_keyframes(street, tmp_path / "b", KeyframeParams(max_gap_s=4.0))
    assert len(dense) > len(sparse) >= 2


def test_people_walking_is_not_a_shot_change(samples: dict[str, Path], tmp_path: Path) -> None:
    # street.mkv is one continuous shot of pedestrians, H.264 with B-frames. Its B-frames are not
    # decoded, so neighbouring decoded frames can be two or three frames apart: measured per frame
    # interval, the motion between them stays motion (measured over the gap, it read as two cuts).
    frames = extract_video_keyframes(samples["street.mkv"], tmp_path, KeyframeParams())
    assert [f.reason for f in frames] == ["first", "gap"]
    assert [f.t for f in frames] == pytest.approx([0.0, 4.0], abs=0.2)


def test_large_frames_are_scaled_down(samples: dict[str, Path], tmp_path: Path) -> None:
    frames = extract_video_keyframes(samples["talk.mp4"], tmp_path, KeyframeParams(max_side=640, max_gap_s=100))
    assert max(frames[0].width, frames[0].height) == 640


def test_truncated_video_is_refused(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    bad = bad_inputs["truncated_mkv"]
    info = inspect_media(bad, Limits())
    with pytest.raises(MediaRejected, match="truncated") as err:
        extract_video_keyframes(bad, tmp_path, KeyframeParams(), info.duration_s)
    assert bad.name in str(err.value)


def test_an_image_is_one_upright_keyframe(samples: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "rotated.jpg"
    with Image.open(samples["messi5.jpg"]) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
        img.save(src, exif=exif)
        w, h = img.size
    frames = image_keyframe(src, tmp_path / "out", KeyframeParams())
    assert len(frames) == 1 and frames[0].reason == "image"
    assert (frames[0].width, frames[0].height) == (h, w)


def test_table_has_a_schema_even_when_empty() -> None:
    table = keyframes_table([])
    assert table.num_rows == 0 and "t" in table.column_names and "path" in table.column_names
