"""Real BlazePose models on real photos: people are found, their keypoints land on the body, and
the re-implemented mediapipe graph agrees with mediapipe 0.10.21 itself."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from media_assets.analysis import poses as poses_mod
from media_assets.analysis.poses import (
    KEYPOINT_NAMES,
    MODEL_ID,
    POSES_SCHEMA,
    Pose,
    PoseModel,
    PoseParams,
    model_files,
    person_count_summary,
    pose_from_row,
    poses_table,
)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# mediapipe 0.10.21's own Pose graph (static image mode, model_complexity=1, the same .tflite
# files) on these images: (x, y) in image pixels of some keypoints, all with visibility >= 0.7.
MEDIAPIPE_MESSI = {
    "nose": (250.1, 113.9),
    "left_eye": (252.5, 104.6),
    "right_eye": (239.8, 105.3),
    "left_shoulder": (271.2, 128.1),
    "right_shoulder": (201.9, 137.3),
    "left_wrist": (348.6, 166.4),
    "right_wrist": (103.4, 101.9),
    "left_hip": (290.6, 224.7),
    "right_hip": (251.7, 243.8),
    "left_knee": (340.5, 246.2),
    "right_knee": (236.5, 286.4),
}
MEDIAPIPE_ASTRONAUT = {
    "nose": (222.7, 128.0),
    "left_eye": (248.9, 112.5),
    "right_eye": (205.0, 103.3),
    "left_shoulder": (306.2, 256.6),
    "right_shoulder": (112.7, 240.0),
}


log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def model() -> PoseModel:
    return PoseModel(PoseParams())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def messi() -> np.ndarray:
    path = OPENCV_DATA / "messi5.jpg"
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    return np.asarray(Image.open(path).convert("RGB"))


def _side_by_side(*photos: np.ndarray) -> np.ndarray:
    """The photos scaled to the first one's height, left to right."""
    h = photos[0].shape[0]
    scaled = [
        np.asarray(Image.fromarray(p).resize((round(p.shape[1] * h / p.shape[0]), h), Image.Resampling.BILINEAR))
        for p in photos
    ]
    return np.concatenate(scaled, axis=1)


def _xy(pose: Pose, name: str) -> np.ndarray:
    return np.array(pose.keypoints[K[name]][:2])


def _check_pose_shape(pose: Pose, img: np.ndarray, whole_body_in_frame: bool = True) -> None:
    h, w = img.shape[:2]
    assert 0.5 <= pose.score <= 1.0
    assert len(pose.keypoints) == 33 and all(len(kp) == 4 for kp in pose.keypoints)
    assert all(isinstance(v, float) for kp in pose.keypoints for v in kp)
    assert all(0.0 <= kp[3] <= 1.0 for kp in pose.keypoints)
    x1, y1, x2, y2 = pose.box
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    seen = [kp for kp in pose.keypoints if kp[3] >= 0.5]
    assert seen
    # The box is made of the visible keypoints (clipped to the frame).
    assert all(x1 - 1e-3 <= min(max(x, 0), w) <= x2 + 1e-3 for x, _, _, _ in seen)
    assert all(y1 - 1e-3 <= min(max(y, 0), h) <= y2 + 1e-3 for _, y, _, _ in seen)
    # The visible keypoints lie inside the image. (Of a person cut by the frame edge, the model
    # may still call an extrapolated knee "visible": its visibility is the model's guess.)
    if whole_body_in_frame:
        assert all(-2 <= x <= w + 2 and -2 <= y <= h + 2 for x, y, _, _ in seen)
    head = [pose.keypoints[i] for i in range(11)]
    assert all(0 <= x <= w and 0 <= y <= h for x, y, _, _ in head)


def test_params_model_files_and_names() -> None:
    p = PoseParams.from_params({"max_people": 2, "min_presence": 0.7, "unknown": 1, "min_size": 40})
    assert p.max_people == 2 and p.min_presence == 0.7
    assert p.min_detection_score == 0.5 and p.nms_iou == 0.3 and p.tiles
    files = model_files(p)
    assert [f.name for f in files] == ["pose_detection.tflite", "pose_landmark_full.tflite"]
    assert all(f.exists() for f in files)
    assert MODEL_ID
    assert len(KEYPOINT_NAMES) == 33 == len(set(KEYPOINT_NAMES))
    assert KEYPOINT_NAMES[0] == "nose" and KEYPOINT_NAMES[11] == "left_shoulder" and KEYPOINT_NAMES[24] == "right_hip"
    assert KEYPOINT_NAMES[-1] == "right_foot_index"
    anchors = poses_mod._ssd_anchors()  # what the detector's 2254 outputs are laid out on
    assert anchors.shape == (2254, 2)
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_messi_one_upright_player_matching_mediapipe(model: PoseModel, messi: np.ndarray) -> None:
    (poses,) = model([messi])
    assert len(poses) == 1, [q.box for q in poses]
    pose = poses[0]
    _check_pose_shape(pose, messi)
    assert pose.score > 0.9
    # Upright: shoulders above hips, nose above shoulders, knees below hips (y grows downwards).
    for side in ("left", "right"):
        assert _xy(pose, f"{side}_shoulder")[1] < _xy(pose, f"{side}_hip")[1] - 50
        assert _xy(pose, f"{side}_hip")[1] < _xy(pose, f"{side}_knee")[1]
        assert _xy(pose, "nose")[1] < _xy(pose, f"{side}_shoulder")[1]
    # The whole player is in the frame: most keypoints visible.
    assert np.mean([kp[3] for kp in pose.keypoints]) > 0.8
    # Same keypoints as mediapipe's own graph, within a few pixels.
    for name, ref in MEDIAPIPE_MESSI.items():
        assert np.linalg.norm(_xy(pose, name) - ref) < 4.0, (name, _xy(pose, name), ref)


def test_astronaut_face_keypoints_on_her_face(model: PoseModel, astronaut: np.ndarray) -> None:
    (poses,) = model([astronaut])
    assert len(poses) == 1, [q.box for q in poses]
    pose = poses[0]
    _check_pose_shape(pose, astronaut)
    # Her face spans about x 150-260, y 30-170 in the 512x512 image.
    for name in ("nose", "left_eye", "right_eye", "mouth_left", "mouth_right"):
        x, y, _, vis = pose.keypoints[K[name]]
        assert vis > 0.9 and 150 <= x <= 260 and 30 <= y <= 170, (name, x, y, vis)
    assert _xy(pose, "nose")[1] < _xy(pose, "left_shoulder")[1] - 60
    # Her hips are below the frame: extrapolated there, with a low visibility.
    for name in ("left_hip", "right_hip"):
        assert pose.keypoints[K[name]][3] < 0.5
    for name, ref in MEDIAPIPE_ASTRONAUT.items():
        assert np.linalg.norm(_xy(pose, name) - ref) < 4.0, (name, _xy(pose, name), ref)


@pytest.mark.parametrize("other", ["hopper", "messi"])
def test_two_photos_side_by_side_give_two_people(
    model: PoseModel, astronaut: np.ndarray, other: str, request: pytest.FixtureRequest
) -> None:
    img = _side_by_side(astronaut, request.getfixturevalue(other))
    (poses,) = model([img])
    assert len(poses) == 2, [q.box for q in poses]
    noses = sorted(_xy(q, "nose")[0] for q in poses)
    assert noses[0] < 512 <= noses[1]  # one person in each photo
    # The astronaut's face is where it is in her own photo.
    left = min(poses, key=lambda q: _xy(q, "nose")[0])
    assert np.linalg.norm(_xy(left, "nose") - MEDIAPIPE_ASTRONAUT["nose"]) < 12
    for q in poses:
        _check_pose_shape(q, img, whole_body_in_frame=False)
    assert poses[0].score >= poses[1].score
    # max_people caps the list, best first.
    (capped,) = PoseModel(PoseParams(max_people=1))([img])
    assert len(capped) == 1 and capped[0].score == poses[0].score


def test_three_people_in_a_wide_frame_need_the_tiles(
    model: PoseModel, astronaut: np.ndarray, hopper: np.ndarray, messi: np.ndarray
) -> None:
    img = _side_by_side(astronaut, hopper, messi)  # 1769 x 512
    (poses,) = model([img])
    assert len(poses) == 3, [q.box for q in poses]
    noses = sorted(_xy(q, "nose")[0] for q in poses)
    assert noses[0] < 512 < noses[1] < 949 < noses[2]
    # Why `tiles` exists: letterboxed whole into 224 px, one of them falls under the threshold.
    (whole_only,) = PoseModel(PoseParams(tiles=False))([img])
    assert len(whole_only) < 3
    starts = poses_mod._tile_starts(1769, 512)  # square windows across, overlapping by >= 1/5
    assert starts[0] == 0 and starts[-1] == 1769 - 512
    assert all(0 < b - a <= 512 * 0.8 for a, b in zip(starts, starts[1:], strict=False))
    assert poses_mod._tile_starts(1280, 720) == [0, 560]  # 16:9: two windows


def test_no_people_in_blank_noise_or_a_cat(model: PoseModel) -> None:
    rng = np.random.default_rng(0)
    images = [
        np.full((480, 640, 3), 128, np.uint8),
        np.zeros((300, 300, 3), np.uint8),
        rng.integers(0, 256, (360, 640, 3), dtype=np.uint8),
        skimage.data.chelsea(),
        np.full((1, 1, 3), 255, np.uint8),
    ]
    assert model(images) == [[] for _ in images]
    assert model([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
        [[1, 2, 3]],
    ],
)
def test_bad_image_raises_value_error(model: PoseModel, bad: object) -> None:
    with pytest.raises(ValueError, match="image 1"):
        model([np.zeros((32, 32, 3), np.uint8), bad])  # type: ignore[list-item]


def test_numpy_fallback_matches_cv2(model: PoseModel, messi: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    m = np.array([[0.9, -0.3, 40.5], [0.3, 0.9, -20.2]])
    for replicate in (True, False):
        a = poses_mod._warp(messi, m, 256, replicate)
        b = poses_mod._warp_numpy(messi, m, 256, replicate)
        assert np.abs(a - b).max() <= 1.0 and np.abs(a - b).mean() < 0.1
    (with_cv2,) = model([messi])
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    (without,) = model([messi])
    assert len(with_cv2) == len(without) == 1
    assert abs(with_cv2[0].score - without[0].score) < 0.01
    for name in MEDIAPIPE_MESSI:
        assert np.linalg.norm(_xy(with_cv2[0], name) - _xy(without[0], name)) < 5.0


def test_poses_table_round_trip_and_empty(model: PoseModel, messi: np.ndarray, astronaut: np.ndarray) -> None:
    empty = poses_table([])
    assert empty.num_rows == 0 and empty.schema == POSES_SCHEMA
    assert empty.column_names == ["kf", "t", "person", "box", "score", "keypoints"]

    frames = model([messi, astronaut])
    rows = [
        {"kf": kf, "t": kf * 2.5, "person": j, "box": p.box, "score": p.score, "keypoints": p.keypoints}
        for kf, found in enumerate(frames)
        for j, p in enumerate(found)
    ]
    table = poses_table(rows)
    assert table.schema == POSES_SCHEMA and table.num_rows == 2
    back = table.to_pylist()
    assert [r["kf"] for r in back] == [0, 1] and back[1]["t"] == 2.5
    for r, (found,) in zip(back, frames, strict=True):
        again = pose_from_row(r)
        assert len(again.keypoints) == 33
        assert np.allclose(again.keypoints, found.keypoints, rtol=1e-6, atol=1e-3)
        assert np.allclose(again.box, found.box, atol=1e-3) and abs(again.score - found.score) < 1e-6
    # `person` may be left out: numbered within each keyframe
    numbered = poses_table([{k: v for k, v in r.items() if k != "person"} for r in rows * 2])
    assert numbered.column("person").to_pylist() == [0, 0, 1, 1]


def test_person_count_summary(model: PoseModel, messi: np.ndarray) -> None:
    assert person_count_summary([]) == {
        "keyframes": 0,
        "max_people": 0,
        "keyframes_with_people": 0,
        "mean_visibility": None,
    }
    (found,) = model([messi])
    two = Pose(box=(0, 0, 1, 1), score=0.6, keypoints=((0.0, 0.0, 0.0, 0.0),) * 33)
    summary = person_count_summary([found, [], found + [two], []])
    assert summary["keyframes"] == 4 and summary["max_people"] == 2 and summary["keyframes_with_people"] == 2
    vis = [kp[3] for kp in found[0].keypoints]
    # messi's pose twice plus one pose whose 33 keypoints are all invisible
    assert summary["mean_visibility"] == pytest.approx(2 * sum(vis) / (3 * 33))


def test_speed_per_frame(model: PoseModel, messi: np.ndarray, astronaut: np.ndarray) -> None:
    frames = [messi, astronaut, np.zeros((720, 1280, 3), np.uint8)]
    model(frames)  # warm-up
    n = 3
    start = time.perf_counter()
    for _ in range(n):
        model(frames)
    ms = (time.perf_counter() - start) / (n * len(frames)) * 1000
    log.info("BlazePose: %.1f ms per keyframe (1 person, 1 person, empty 720p)", ms)
    print(f"BlazePose: {ms:.1f} ms per keyframe")
    assert ms < 1000  # generous: a 2-core CI box under load; typically 20-60 ms
