"""The media page's per-keyframe timeline and its Dagster links, on show()-shaped objects."""

from __future__ import annotations

import pytest

from media_assets.ui.timeline import dagster_url, keyframe_timeline, partition_url

SHOWN = {
    "keyframes": [{"t": 0.0, "path": "/s/k0.jpg"}, {"t": 4.2, "path": "/s/k1.jpg"}],
    "faces": [
        {"t": 4.2, "box": [0, 0, 9, 9], "face_id": "m/1/0", "person_id": "p-ab"},
        {"t": 4.2000001, "box": [9, 9, 19, 19], "face_id": "m/1/1", "person_id": None},
    ],
    "poses": [{"t": 0.0, "persons": []}, {"t": 4.2, "persons": [{"keypoints": []}, {"keypoints": []}]}],
    "safety": {"verdict": "review", "labels": [{"t": 4.2, "label": "FEMALE_BREAST_EXPOSED", "score": 0.71}]},
}


def test_each_keyframe_carries_its_faces_poses_safety_and_tags() -> None:
    tags = [{"t": 0.0, "label": "slide", "score": 0.4}, {"t": 0.0, "label": "screen", "score": 0.9}]
    first, second = keyframe_timeline(SHOWN, tags, {"p-ab": "Ada"})
    assert (first.t, first.path, first.faces, first.poses, first.safety) == (0.0, "/s/k0.jpg", [], 0, [])
    assert first.tags == ["screen 0.90", "slide 0.40"]  # best first
    assert second.faces == ["Ada", "unassigned"]  # a user's name wins over the anonymous id
    assert second.face_ids == ["m/1/0", "m/1/1"]
    assert second.poses == 2
    assert second.safety == ["FEMALE_BREAST_EXPOSED 0.71"]


def test_unnamed_persons_show_their_id_and_unanalysed_poses_stay_unknown() -> None:
    moments = keyframe_timeline({**SHOWN, "poses": None})
    assert moments[1].faces == ["p-ab", "unassigned"]
    assert [m.poses for m in moments] == [None, None]


def test_media_without_keyframes_have_no_timeline() -> None:
    assert keyframe_timeline({"keyframes": None, "faces": None}) == []


def test_partition_links_point_at_the_dagster_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIALENS_DAGSTER_URL", raising=False)
    assert dagster_url() == "http://127.0.0.1:3000"
    assert partition_url("ocr_text", "a b/c") == (
        "http://127.0.0.1:3000/assets/ocr_text?view=partitions&partition=a+b%2Fc"
    )
    monkeypatch.setenv("MEDIALENS_DAGSTER_URL", "https://media.example/dagster/")
    assert partition_url("faces", "k").startswith("https://media.example/dagster/assets/faces?")
