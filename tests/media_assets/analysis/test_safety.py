"""NudeNet on real photos (faces labelled, nothing unsafe), and the pure verdict / restraint-cue rules
on constructed labels and synthetic keypoints (their input is labels and keypoints, so that is legit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from media_assets.analysis.safety import (
    LABELS,
    MODEL_ID,
    SAFETY_SCHEMA,
    RestraintCue,
    SafetyLabel,
    SafetyModel,
    SafetyParams,
    Verdict,
    model_files,
    restraint_cues,
    safety_table,
    verdict,
)

P = SafetyParams()
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def model() -> SafetyModel:
    return SafetyModel(P)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


# ------------------------------------------------------------------------------------ params/model


def test_params_and_model_files() -> None:
    p = SafetyParams.from_params({"min_score": 0.5, "review_labels": ["BUTTOCKS_COVERED"], "other": 1})
    assert p.min_score == 0.5 and p.review_labels == ("BUTTOCKS_COVERED",)  # YAML list -> tuple
    assert hash(p) == hash(SafetyParams.from_params({"min_score": 0.5, "review_labels": ["BUTTOCKS_COVERED"]}))
    with pytest.raises(ValueError, match="unknown labels"):
        SafetyParams.from_params({"unsafe_labels": ["FEMALE_BREAST_EXPOZED"]})
    with pytest.raises(ValueError, match="min_score"):
        SafetyParams(min_score=1.5)
    with pytest.raises(ValueError, match="min_consecutive"):
        SafetyParams(min_consecutive=0)
    (f,) = model_files(P)
    assert f.name == "320n.onnx" and f.parent.name == "nudenet" and f.stat().st_size > 1_000_000
    assert MODEL_ID and len(LABELS) == 18


def test_portraits_get_a_face_label_and_are_safe(model: SafetyModel, astronaut: np.ndarray, hopper: np.ndarray) -> None:
    ast, hop = model([astronaut, hopper])
    for labels, (fx, fy) in ((ast, (225, 120)), (hop, (265, 240))):
        faces = [lb for lb in labels if lb.label in ("FACE_FEMALE", "FACE_MALE")]
        assert len(faces) == 1, labels
        face = faces[0]
        assert face.score >= 0.6  # measured 0.81 (astronaut), 0.76 (Hopper)
        x1, y1, x2, y2 = face.box
        assert x1 < fx < x2 and y1 < fy < y2, face.box  # the box is on the face
        assert all(isinstance(v, float) for v in face.box)
    # measured: astronaut [FACE_FEMALE 0.81 at (173, 82, 273, 179)]
    assert ast[0].box == pytest.approx((173, 82, 273, 179), abs=3)
    v = verdict([(0.0, ast), (4.0, hop)], [], P)
    assert v.level == "safe" and v.reasons == () and v.unsafe_keyframes == v.review_keyframes == 0


def test_same_labels_as_nudenet_on_rgb_arrays(model: SafetyModel, astronaut: np.ndarray, hopper: np.ndarray) -> None:
    from nudenet import NudeDetector

    ref = NudeDetector(model_path=str(model_files(P)[0]))
    low = SafetyModel(SafetyParams(min_score=0.0))  # nudenet's own threshold (> 0.25) applies
    for img in (astronaut, hopper):
        (ours,) = low([img])
        theirs = ref.detect(img)
        assert [(lb.label, round(lb.score, 5)) for lb in ours] == [(d["class"], round(d["score"], 5)) for d in theirs]
        for lb, d in zip(ours, theirs, strict=True):
            x, y, w, h = d["box"]  # nudenet: int(x), int(y), int(w), int(h)
            assert lb.box == pytest.approx((x, y, x + w, y + h), abs=2.01)


def test_blank_images_batches_and_sizes(model: SafetyModel, astronaut: np.ndarray) -> None:
    blank = np.zeros((720, 1280, 3), np.uint8)
    gray = np.full((300, 200, 3), 128, np.uint8)
    assert model([blank, gray]) == [[], []]
    assert model([]) == []
    # order kept across more than one onnxruntime batch (MAX_BATCH 16); boxes mapped back through the
    # bottom/right padding on either axis
    wide, tall = np.zeros((512, 900, 3), np.uint8), np.zeros((900, 512, 3), np.uint8)
    wide[:, 388:], tall[388:] = astronaut, astronaut
    results = model([gray] * 16 + [wide, tall])
    assert results[:16] == [[]] * 16
    for labels, (dx, dy) in ((results[16], (388, 0)), (results[17], (0, 388))):
        (face,) = [lb for lb in labels if lb.label == "FACE_FEMALE"]
        assert face.box == pytest.approx((173 + dx, 82 + dy, 273 + dx, 179 + dy), abs=6)
    assert verdict([(float(i), r) for i, r in enumerate(results)], [], P).level == "safe"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (np.zeros((64, 64, 3), np.float32), "float32"),
        (np.zeros((64, 64), np.uint8), r"\(64, 64\)"),
        (np.zeros((64, 64, 4), np.uint8), r"\(64, 64, 4\)"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        ("frame.jpg", "str"),
    ],
)
def test_bad_images_raise_value_error(model: SafetyModel, astronaut: np.ndarray, bad: object, why: str) -> None:
    with pytest.raises(ValueError, match=f"image 1 .*{why}"):
        model([astronaut, bad])  # type: ignore[list-item]


def test_safety_table(model: SafetyModel, astronaut: np.ndarray) -> None:
    empty = safety_table([])
    assert empty.num_rows == 0 and empty.schema == SAFETY_SCHEMA
    (labels,) = model([astronaut])
    table = safety_table([{"kf": 2, "t": 8.0, **asdict(lb)} for lb in labels])
    assert table.schema == SAFETY_SCHEMA and table.num_rows == len(labels) == 1
    row = table.to_pylist()[0]
    assert row["kf"] == 2 and row["t"] == 8.0 and row["label"] == "FACE_FEMALE"
    assert row["box"] == pytest.approx(list(labels[0].box), abs=1e-3)


def test_real_false_positives_colour_wheel_and_evening_dress(model: SafetyModel) -> None:
    # A colour wheel: a lone BUTTOCKS_EXPOSED (measured 0.83) fills the image -> review, not unsafe.
    (wheel,) = model([skimage.data.colorwheel()])
    assert [lb.label for lb in wheel] == ["BUTTOCKS_EXPOSED"] and wheel[0].score > 0.7
    v = verdict([(0.0, wheel)], [], P)
    assert v.level == "review" and v.unsafe_keyframes == 1 and "alone in one keyframe" in v.reasons[0]

    # Megamind.avi (a woman in an evening dress): FEMALE_BREAST_COVERED in 3 of 11 keyframes at
    # 0.67-0.75 -> safe by default; reviewed once that clothed class is made a review label.
    path = OPENCV_DATA / "Megamind.avi"
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    import av

    frames: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i % 25 == 0:
                frames.append((float(f.time or 0.0), f.to_ndarray(format="rgb24")))
    labels = model([img for _, img in frames])
    per_kf = [(t, lbs) for (t, _), lbs in zip(frames, labels, strict=True)]
    assert sum(any(lb.label == "FACE_FEMALE" for lb in lbs) for lbs in labels) >= 9  # measured 10 of 11
    assert verdict(per_kf, [], P).level == "safe"
    strict = replace(P, review_labels=(*P.review_labels, "FEMALE_BREAST_COVERED"))
    v = verdict(per_kf, [], strict)
    assert v.level == "review" and v.reasons[0].startswith("FEMALE_BREAST_COVERED 0.7")


# ---------------------------------------------------------------------------------------- verdict


def lab(label: str, score: float) -> SafetyLabel:
    return SafetyLabel(label=label, score=score, box=(10.0, 10.0, 50.0, 50.0))


FACE = lab("FACE_FEMALE", 0.8)
CUE = RestraintCue(start_t=4.0, end_t=8.0, keyframes=3, kind="wrists_together", person=0)


def test_verdict_unsafe_with_readable_reasons() -> None:
    frames = [
        (0.0, [FACE]),
        (12.0, [FACE, lab("FEMALE_BREAST_EXPOSED", 0.82), lab("FEMALE_BREAST_EXPOSED", 0.7)]),
        (16.0, [lab("FEMALE_BREAST_EXPOSED", 0.65), lab("BUTTOCKS_COVERED", 0.75)]),
    ]
    v = verdict(frames, [], P)
    assert v.level == "unsafe" and v.unsafe_keyframes == 2 and v.review_keyframes == 0
    # strongest occurrence, counted once per keyframe
    assert v.reasons[0] == "FEMALE_BREAST_EXPOSED 0.82 at 12.0 s (+1 more keyframes)"
    assert len(v.reasons) == 1  # BUTTOCKS_COVERED is not a review label by default
    # one corroborated keyframe is enough by default; two needed when configured
    one = verdict(frames[:2], [], P)
    assert one.level == "unsafe" and one.reasons == ("FEMALE_BREAST_EXPOSED 0.82 at 12.0 s",)
    assert verdict(frames[:2], [], replace(P, unsafe_min_keyframes=2)).level == "review"


def test_verdict_lone_exposed_label_in_one_keyframe_is_review() -> None:
    # the colour-wheel false positive: BUTTOCKS_EXPOSED 0.83 and nothing else
    v = verdict([(3.0, [lab("BUTTOCKS_EXPOSED", 0.83)]), (7.0, [])], [], P)
    assert v.level == "review" and v.unsafe_keyframes == 1
    assert v.reasons == ("BUTTOCKS_EXPOSED 0.83 at 3.0 s (alone in one keyframe: review)",)
    # repeated over keyframes, or with the check off, it is unsafe
    twice = [(3.0, [lab("BUTTOCKS_EXPOSED", 0.83)]), (7.0, [lab("BUTTOCKS_EXPOSED", 0.7)])]
    assert verdict(twice, [], P).level == "unsafe"
    assert verdict(twice[:1], [], replace(P, unsafe_needs_corroboration=False)).level == "unsafe"


def test_verdict_review_and_safe() -> None:
    # exposed but below unsafe_score: review at once
    v = verdict([(1.0, [FACE, lab("MALE_GENITALIA_EXPOSED", 0.5)])], [], P)
    assert v.level == "review" and v.review_keyframes == 1 and v.unsafe_keyframes == 0
    assert v.reasons == ("MALE_GENITALIA_EXPOSED 0.50 at 1.0 s",)
    # covered classes: review from review_min_keyframes (2) keyframes at >= review_score (0.7)
    covered = [(0.0, [FACE, lab("FEMALE_GENITALIA_COVERED", 0.72)]), (4.0, [lab("FEMALE_GENITALIA_COVERED", 0.9)])]
    v = verdict(covered, [], P)
    assert v.level == "review" and v.reasons == ("FEMALE_GENITALIA_COVERED 0.90 at 4.0 s (+1 more keyframes)",)
    one_of_two = [covered[0], (4.0, [FACE])]
    # ... fewer keyframes: safe, though counted
    assert verdict(one_of_two, [], P) == Verdict(level="safe", reasons=(), unsafe_keyframes=0, review_keyframes=1)
    assert verdict(one_of_two, [], replace(P, review_min_keyframes=1)).level == "review"
    # a still image has one keyframe: one is enough there
    assert verdict(covered[:1], [], P).level == "review"
    # below review_score; clothed classes (not review labels by default); below min_score: safe
    benign = [
        (0.0, [FACE, lab("FEMALE_GENITALIA_COVERED", 0.65), lab("ARMPITS_EXPOSED", 0.47)]),
        (4.0, [lab("FEMALE_GENITALIA_COVERED", 0.65), lab("FEET_EXPOSED", 0.9), lab("BELLY_EXPOSED", 0.8)]),
        (6.0, [lab("FEMALE_BREAST_COVERED", 0.9), lab("BUTTOCKS_COVERED", 0.9)]),
        (7.0, [lab("FEMALE_BREAST_COVERED", 0.9), lab("BUTTOCKS_COVERED", 0.9)]),
        (8.0, [lab("FEMALE_GENITALIA_EXPOSED", 0.35)]),  # below min_score 0.4
    ]
    assert verdict(benign, [], P) == verdict([], [], P) == Verdict(level="safe")


def test_restraint_cue_gives_review_never_unsafe() -> None:
    v = verdict([(0.0, [FACE])], [CUE], P)
    assert v.level == "review"
    assert v.reasons == ("restraint cue (wrists_together, person 0) 4.0-8.0 s over 3 keyframes: for human review only",)
    many = [replace(CUE, person=i, keyframes=50) for i in range(30)]
    assert verdict([(0.0, [FACE])], many, replace(P, max_reasons=100)).level == "review"
    assert verdict([(0.0, [FACE])], [CUE], replace(P, restraint_review=False)).level == "safe"
    # it does not lower an unsafe verdict either
    unsafe = [(12.0, [FACE, lab("ANUS_EXPOSED", 0.9)])]
    v = verdict(unsafe, [CUE], P)
    assert v.level == "unsafe" and v.reasons[0] == "ANUS_EXPOSED 0.90 at 12.0 s" and "restraint" in v.reasons[1]


def test_verdict_caps_reasons_and_rejects_bad_input() -> None:
    cues = [replace(CUE, person=i) for i in range(25)]
    v = verdict([], cues, P)
    assert len(v.reasons) == P.max_reasons and v.reasons[-1] == "... and 16 more"
    with pytest.raises(ValueError, match="finite"):
        verdict([(float("nan"), [FACE])], [], P)
    with pytest.raises(ValueError, match="SafetyLabel"):
        verdict([(0.0, [("FACE_FEMALE", 0.9)])], [], P)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="0..1"):
        verdict([(0.0, [lab("FACE_FEMALE", 1.5)])], [], P)
    with pytest.raises(ValueError, match="pair"):
        verdict([0.0], [], P)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="SafetyParams"):
        verdict([], [], {"min_score": 0.4})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- restraint cues


@dataclass(frozen=True)
class FakePose:
    """Shaped like media_assets.analysis.poses.Pose (which this module must not import)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float, float, float], ...]


def pose(
    cx: float = 300.0,
    wrists: str = "apart",
    elbows_visible: bool = True,
    wrist_z: float = 40.0,
) -> FakePose:
    """A person facing the camera: shoulders 80 px apart at y=100, hips at y=250 (torso 150 px)."""
    kp = [(cx, 60.0, -10.0, 0.9)] * 33  # head and everything else: seen, near the nose
    pts = {
        11: (cx + 40, 100.0, 0.0, 0.99),  # left shoulder (image right: the person faces us)
        12: (cx - 40, 100.0, 0.0, 0.99),
        13: (cx + 50, 180.0, 5.0, 0.95 if elbows_visible else 0.1),
        14: (cx - 50, 180.0, 5.0, 0.95 if elbows_visible else 0.1),
        23: (cx + 25, 250.0, 0.0, 0.95),
        24: (cx - 25, 250.0, 0.0, 0.95),
    }
    if wrists == "apart":
        pts |= {15: (cx + 55, 250.0, -5.0, 0.9), 16: (cx - 55, 250.0, -5.0, 0.9)}
    elif wrists == "together":  # 16 px apart: < 0.25 x 150
        pts |= {15: (cx + 8, 200.0, -30.0, 0.9), 16: (cx - 8, 200.0, -30.0, 0.9)}
    elif wrists == "hidden":  # BlazePose still predicts hidden wrists, with low visibility
        pts |= {15: (cx + 10, 260.0, wrist_z, 0.1), 16: (cx - 10, 260.0, wrist_z, 0.1)}
    for i, p in pts.items():
        kp[i] = p
    return FakePose(box=(cx - 60, 40.0, cx + 60, 450.0), score=0.9, keypoints=tuple(kp))


def test_hands_together_over_three_keyframes_is_one_cue() -> None:
    frames = [(0.0, [pose()]), (4.0, [pose(wrists="together")]), (8.0, [pose(cx=310, wrists="together")])]
    frames += [(12.0, [pose(cx=305, wrists="together")]), (16.0, [pose()])]
    assert restraint_cues(frames, P) == [
        RestraintCue(start_t=4.0, end_t=12.0, keyframes=3, kind="wrists_together", person=0)
    ]


def test_no_cue_for_hands_apart_or_a_single_keyframe() -> None:
    assert restraint_cues([(float(t), [pose()]) for t in range(5)], P) == []
    assert restraint_cues([(0.0, [pose(wrists="together")])], P) == []
    alternating = [(float(t), [pose(wrists="together" if t % 2 else "apart")]) for t in range(6)]
    assert restraint_cues(alternating, P) == []
    assert restraint_cues([], P) == []
    # a longer minimum
    two = [(0.0, [pose(wrists="together")]), (1.0, [pose(wrists="together")])]
    assert len(restraint_cues(two, P)) == 1 and restraint_cues(two, replace(P, min_consecutive=3)) == []


def test_people_are_told_apart_by_box_overlap() -> None:
    # two people side by side; only the one on the right holds their hands together
    frames = [(float(t), [pose(cx=100), pose(cx=600, wrists="together")]) for t in range(3)]
    (cue,) = restraint_cues(frames, P)
    assert cue.person == 1 and cue.keyframes == 3
    # listed in another order in one keyframe: still the same person
    frames[1] = (1.0, [frames[1][1][1], frames[1][1][0]])
    assert restraint_cues(frames, P) == [cue]
    # the "same" pose jumping across the frame is another person: no run of 2
    jumping = [(0.0, [pose(cx=100, wrists="together")]), (1.0, [pose(cx=600, wrists="together")])]
    assert restraint_cues(jumping, P) == []


def test_wrists_behind_back_needs_hidden_wrists_behind_the_body() -> None:
    behind = [(float(t), [pose(wrists="hidden")]) for t in range(3)]
    (cue,) = restraint_cues(behind, P)
    assert cue.kind == "wrists_behind_back" and (cue.start_t, cue.end_t, cue.keyframes) == (0.0, 2.0, 3)
    # hands hidden in front of the body (a desk, a lectern): no cue
    assert restraint_cues([(float(t), [pose(wrists="hidden", wrist_z=-40.0)]) for t in range(3)], P) == []
    # no depth at all: no cue
    assert restraint_cues([(float(t), [pose(wrists="hidden", wrist_z=0.0)]) for t in range(3)], P) == []
    # arms not in the picture (elbows unseen): the wrists are cropped, not hidden
    assert restraint_cues([(float(t), [pose(wrists="hidden", elbows_visible=False)]) for t in range(3)], P) == []
    assert restraint_cues(behind, replace(P, behind_back=False)) == []


def test_restraint_cues_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="time"):
        restraint_cues([(1.0, [pose()]), (1.0, [pose()])], P)
    short = FakePose(box=(0, 0, 10, 10), score=1.0, keypoints=((0.0, 0.0, 0.0, 1.0),) * 17)
    with pytest.raises(ValueError, match="keypoints"):
        restraint_cues([(0.0, [short])], P)
    with pytest.raises(ValueError, match="box"):
        restraint_cues([(0.0, [replace(pose(), box=(10.0, 0.0, 0.0, 10.0))])], P)
    with pytest.raises(ValueError, match=r"\.box"):
        restraint_cues([(0.0, [object()])], P)  # type: ignore[list-item]
