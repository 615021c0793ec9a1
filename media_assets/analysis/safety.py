"""Flag media that a person should look at before it is shared: nudity labels and restraint cues.

Labels come from NudeNet 3.4's YOLOv8n detector (`320n.onnx`, shipped inside the `nudenet` wheel, so
nothing is downloaded). We run the ONNX graph in our own onnxruntime session, so batching and the
execution providers (CPU/CUDA) are ours, and re-implement nudenet's pre/post-processing from
`nudenet/nudenet.py` 3.4.2: pad the frame with black to a square at the bottom/right, resize that to
320x320 (bilinear), scale to 0..1; decode the (22, N) output rows as centre box + 18 class scores,
keep each row's best class, suppress overlaps class-agnostically (IoU 0.45). Two deliberate
differences, both measured or obvious: (1) the network sees RGB. nudenet's file-path API feeds it
BGR (cv2.imread + two channel swaps) while its array API feeds a caller's RGB array as RGB; YOLOv8 is
trained on RGB, and face scores were higher so (astronaut 0.81 vs 0.72, Grace Hopper 0.76 vs 0.61).
On RGB arrays our labels equal `NudeDetector().detect(rgb)`. (2) Boxes are clipped as x1,y1,x2,y2
(nudenet clips the corner and keeps the width, shifting boxes that stick out left/top).

The media-level `verdict` and the `restraint_cues` are pure functions over those labels and over
pose keypoints, so thresholds can be changed and re-applied without running a model. Both are aids
for HUMAN REVIEW: a detector of this size mislabels things (measured: a colour wheel scored
BUTTOCKS_EXPOSED 0.83, an evening dress FEMALE_BREAST_COVERED 0.75), and a restraint cue is only a
hand position, never evidence of anything.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from media_assets.analysis.images import rgb_image
from media_assets.analysis.params import known_fields
from ops_gpu.device import onnx_providers

log = logging.getLogger(__name__)

MODEL_ID = "nudenet-3.4-yolov8n-320"
INPUT_SIZE = 320  # the 320n graph takes any size, but was trained and is shipped for 320x320
MAX_BATCH = 16  # images per onnxruntime call: bounds memory for long keyframe lists
_CANDIDATE_SCORE = 0.2  # nudenet: rows whose best class scores below this are dropped before NMS
_NMS_SCORE = 0.25  # nudenet: cv2.dnn.NMSBoxes score_threshold (strictly greater passes)

# The network's 18 outputs, in nudenet 3.4.2's order (its `__labels`).
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

# BlazePose keypoint indices used by the restraint cue.
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW, _L_WRIST, _R_WRIST, _L_HIP, _R_HIP = 11, 12, 13, 14, 15, 16, 23, 24

LEVELS = ("safe", "review", "unsafe")


@dataclass(frozen=True)
class SafetyParams:
    """Settings of the safety analysis (config `safety:`): the detector's threshold, the verdict rules
    and the restraint cue. All change outputs, so all are part of the result version."""

    # Labels below this are not recorded by SafetyModel and are ignored by `verdict`.
    min_score: float = 0.4
    nms_iou: float = 0.45  # nudenet's class-agnostic NMS overlap
    # An exposed sexual body part at >= unsafe_score makes its keyframe "unsafe"; at min_score up to
    # unsafe_score it calls for review.
    unsafe_labels: tuple[str, ...] = (
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "ANUS_EXPOSED",
        "BUTTOCKS_EXPOSED",
    )
    unsafe_score: float = 0.6
    unsafe_min_keyframes: int = 1
    # A lone unsafe label (no other label >= min_score in its keyframe) in a single keyframe is
    # called "review", not "unsafe": the measured false positives (a colour wheel, fruit) look like this.
    unsafe_needs_corroboration: bool = True
    # Covered classes that call for "review" (>= review_score in review_min_keyframes keyframes):
    # underwear/swimwear-level views. FEMALE_BREAST_COVERED and BUTTOCKS_COVERED are left out by
    # default because this model fires them on ordinary clothes (measured on opencv-doc's
    # Megamind.avi, a woman in an evening dress: FEMALE_BREAST_COVERED 0.75, 0.67, 0.73 in three of
    # eleven keyframes); add them here to review those too.
    review_labels: tuple[str, ...] = ("FEMALE_GENITALIA_COVERED", "ANUS_COVERED")
    review_score: float = 0.7
    review_min_keyframes: int = 2
    max_reasons: int = 10
    # Restraint cue (see `restraint_cues`); restraint_review=False keeps cues out of the verdict.
    restraint_review: bool = True
    wrist_ratio: float = 0.25  # wrists closer than this x the body scale count as together
    min_visibility: float = 0.5  # BlazePose visibility for a keypoint to count as seen
    min_consecutive: int = 2  # keyframes in a row, same person, same cue
    person_iou: float = 0.3  # box overlap that makes two poses in consecutive keyframes one person
    behind_back: bool = True
    behind_back_depth: float = 0.1  # hidden wrists must be this x the body scale behind the torso plane

    def __post_init__(self) -> None:
        for name in ("unsafe_labels", "review_labels"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"safety.{name}: expected a list of labels, got {value!r}")
            unknown = [v for v in value if v not in LABELS]
            if unknown:
                raise ValueError(f"safety.{name}: unknown labels {unknown}; known: {', '.join(LABELS)}")
            object.__setattr__(self, name, tuple(value))  # YAML gives lists; keep the params hashable
        for name in ("min_score", "nms_iou", "unsafe_score", "review_score", "min_visibility"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"safety.{name}: expected 0..1, got {value!r}")
        for name in ("unsafe_min_keyframes", "review_min_keyframes", "min_consecutive", "max_reasons"):
            if getattr(self, name) < 1:
                raise ValueError(f"safety.{name}: expected >= 1, got {getattr(self, name)!r}")
        if self.wrist_ratio <= 0:
            raise ValueError(f"safety.wrist_ratio: expected > 0, got {self.wrist_ratio!r}")
        if not 0.0 <= self.person_iou <= 1.0:
            raise ValueError(f"safety.person_iou: expected 0..1, got {self.person_iou!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SafetyParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class SafetyLabel:
    """One NudeNet detection in one image: class name, score 0..1, box x1,y1,x2,y2 in image pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class RestraintCue:
    """A hand position held by one person over `keyframes` consecutive keyframes, `start_t`..`end_t` s.

    For HUMAN REVIEW ONLY: wrists held together or hidden behind the back are also clapping, praying,
    holding a cup, standing at ease; the cue says "look here", never what happened."""

    start_t: float
    end_t: float
    keyframes: int
    kind: str  # "wrists_together" | "wrists_behind_back"
    person: int  # track id within this media, in order of first appearance


@dataclass(frozen=True)
class Verdict:
    """Media-level outcome: `level` "safe" | "review" | "unsafe", with human-readable `reasons`.

    `unsafe_keyframes` counts keyframes holding an unsafe label at >= unsafe_score (corroborated or
    not); `review_keyframes` counts the other keyframes holding a label that calls for review."""

    level: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    unsafe_keyframes: int = 0
    review_keyframes: int = 0


class PoseLike(Protocol):
    """What `restraint_cues` needs of a pose (media_assets.analysis.poses.Pose fits): a box
    x1,y1,x2,y2 and 33 BlazePose keypoints (x px, y px, z px relative to the hips, smaller = nearer
    the camera; visibility 0..1)."""

    @property
    def box(self) -> Sequence[float]: ...

    @property
    def keypoints(self) -> Sequence[Sequence[float]]: ...


# ----------------------------------------------------------------------------------------- model


def model_files(params: SafetyParams | None = None) -> list[Path]:
    """NudeNet's `320n.onnx` inside the installed `nudenet` package (located, not imported: no download)."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("nudenet is not installed (pip install nudenet==3.4.2)")
    path = Path(spec.origin).resolve().parent / "320n.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall nudenet==3.4.2")
    return [path]


def _preprocess(img: np.ndarray) -> np.ndarray:
    """nudenet's `_read_image`: black padding to a square at the bottom/right, bilinear resize of
    the square to 320x320 (cv2.dnn.blobFromImage's resize), 0..1, CHW; RGB kept (see module doc)."""
    import cv2

    h, w = img.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = img
    small = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return (small.astype(np.float32) * np.float32(1 / 255.0)).transpose(2, 0, 1)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    """Greedy NMS as cv2.dnn.NMSBoxes: best score first, drop boxes overlapping a kept one > iou_thr."""
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        top = int(order[0])
        keep.append(top)
        rest = order[1:]
        ix1 = np.maximum(boxes[rest, 0], boxes[top, 0])
        iy1 = np.maximum(boxes[rest, 1], boxes[top, 1])
        ix2 = np.minimum(boxes[rest, 2], boxes[top, 2])
        iy2 = np.minimum(boxes[rest, 3], boxes[top, 3])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        iou = inter / np.maximum(area[rest] + area[top] - inter, 1e-9)
        order = rest[iou <= iou_thr]
    return keep


def _decode(out: np.ndarray, width: int, height: int, params: SafetyParams) -> list[SafetyLabel]:
    """One image's (22, N) YOLOv8 output -> labels in image pixels, best first (nudenet's `_postprocess`)."""
    rows = out.T  # (N, 4 + 18): cx, cy, w, h in 320-input pixels, then per-class scores (already sigmoid)
    cls_scores = rows[:, 4:]
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(rows)), cls]
    # nudenet keeps >= 0.2, then NMS keeps > 0.25; filtering min_score before greedy NMS gives the
    # same survivors above it (a lower box never suppresses a higher one).
    keep = (score >= _CANDIDATE_SCORE) & (score > _NMS_SCORE) & (score >= params.min_score)
    if not keep.any():
        return []
    rows, cls, score = rows[keep], cls[keep], score[keep]
    k = max(width, height) / INPUT_SIZE  # the padded square was resized to 320
    x1 = (rows[:, 0] - rows[:, 2] / 2) * k
    y1 = (rows[:, 1] - rows[:, 3] / 2) * k
    x2 = (rows[:, 0] + rows[:, 2] / 2) * k
    y2 = (rows[:, 1] + rows[:, 3] / 2) * k
    boxes = np.stack(
        [np.clip(x1, 0, width), np.clip(y1, 0, height), np.clip(x2, 0, width), np.clip(y2, 0, height)], axis=1
    ).astype(np.float64)
    return [
        SafetyLabel(
            label=LABELS[int(cls[j])],
            score=float(score[j]),
            box=(float(boxes[j, 0]), float(boxes[j, 1]), float(boxes[j, 2]), float(boxes[j, 3])),
        )
        for j in _nms(boxes, score.astype(np.float64), params.nms_iou)
    ]


class SafetyModel:
    """NudeNet 320n in one onnxruntime session, loaded once; `__call__` labels a batch of keyframes."""

    def __init__(self, params: SafetyParams | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.params = params or SafetyParams()
        (path,) = model_files(self.params)
        available = set(ort.get_available_providers())
        providers = [p for p in onnx_providers(device) if p in available] or ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" not in providers:
            log.warning("safety: device=cuda but onnxruntime has no CUDAExecutionProvider here; running on CPU")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # no per-run provider chatter
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[1]
        if n_out != 4 + len(LABELS):
            raise ValueError(f"{path}: expected {4 + len(LABELS)} output channels (box + 18 classes), got {n_out}")

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[SafetyLabel]]:
        """Labels per image (same order), best score first. Raises ValueError naming the first
        image that is not an RGB uint8 HxWx3 array, before running anything."""
        for i, img in enumerate(images):
            rgb_image(img, i, "safety")
        results: list[list[SafetyLabel]] = []
        for start in range(0, len(images), MAX_BATCH):
            chunk = images[start : start + MAX_BATCH]
            batch = np.stack([_preprocess(img) for img in chunk])
            (out,) = self.session.run(None, {self.input_name: batch})
            for img, o in zip(chunk, out, strict=True):
                results.append(_decode(o, img.shape[1], img.shape[0], self.params))
        return results


# --------------------------------------------------------------------------------------- verdict


def _reason(label: str, score: float, t: float, n: int, note: str = "") -> str:
    more = f" (+{n - 1} more keyframes)" if n > 1 else ""
    return f"{label} {score:.2f} at {t:.1f} s{more}{note}"


def verdict(
    frames: Sequence[tuple[float, Sequence[SafetyLabel]]],
    cues: Sequence[RestraintCue],
    params: SafetyParams,
) -> Verdict:
    """Media-level verdict from per-keyframe labels `(t, labels)` and restraint cues.

    Labels below min_score are ignored. Then, per label:
    - an `unsafe_labels` label at >= unsafe_score is unsafe. The media is "unsafe" when at least
      unsafe_min_keyframes keyframes hold one, counting (with unsafe_needs_corroboration) only
      keyframes that hold another label too, unless two or more keyframes hold unsafe labels: a lone
      label in a single keyframe is what the measured false positives look like, so it means "review";
    - an `unsafe_labels` label at min_score..unsafe_score means "review" at once;
    - a `review_labels` (covered) label at >= review_score means "review" once review_min_keyframes
      keyframes hold one (NudeNet's covered classes also fire on ordinary clothes);
    - a restraint cue means "review", never more.
    Keyframe minimums are capped at the number of keyframes, so a still image (one keyframe) can
    reach every level. Reasons name the strongest occurrence per label, e.g.
    "FEMALE_BREAST_EXPOSED 0.82 at 12.0 s", unsafe ones first, then the cues; at most max_reasons
    (the last then says how many were left out). A "safe" verdict has no reasons.
    """
    if not isinstance(params, SafetyParams):
        raise ValueError(f"verdict: params must be SafetyParams, got {type(params).__name__}")
    unsafe_set, review_set = set(params.unsafe_labels), set(params.review_labels)
    # per keyframe: t, {group: {label: best score}}, labels >= min_score; groups below
    UNSAFE, LONE, EXPOSED, COVERED = 0, 1, 2, 3
    kfs: list[tuple[float, dict[int, dict[str, float]], int]] = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, tuple | list) or len(frame) != 2:
            raise ValueError(f"verdict: frame {i} must be a (t, labels) pair, got {frame!r}")
        t, labels = frame
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(f"verdict: frame {i} has time {t!r}, expected a finite number of seconds")
        groups: dict[int, dict[str, float]] = {}
        seen = 0
        for lab in labels:
            if not isinstance(lab, SafetyLabel):
                raise ValueError(f"verdict: frame {i} holds {type(lab).__name__}, expected SafetyLabel")
            if not 0.0 <= lab.score <= 1.0:
                raise ValueError(f"verdict: frame {i}: {lab.label} score {lab.score!r} is not in 0..1")
            if lab.score < params.min_score:
                continue
            seen += 1
            if lab.label in unsafe_set:
                group = UNSAFE if lab.score >= params.unsafe_score else EXPOSED
            elif lab.label in review_set and lab.score >= params.review_score:
                group = COVERED
            else:
                continue
            best = groups.setdefault(group, {})
            best[lab.label] = max(best.get(lab.label, 0.0), lab.score)
        kfs.append((float(t), groups, seen))

    n_unsafe = sum(UNSAFE in g for _, g, _ in kfs)
    for _, g, seen in kfs:  # a lone unsafe label in a single keyframe -> review
        if UNSAFE in g and params.unsafe_needs_corroboration and n_unsafe < 2 and seen < 2:
            g[LONE] = g.pop(UNSAFE)
    covered_ok = sum(COVERED in g for _, g, _ in kfs) >= min(params.review_min_keyframes, len(kfs))
    if sum(UNSAFE in g for _, g, _ in kfs) >= min(params.unsafe_min_keyframes, len(kfs)) > 0:
        level = "unsafe"
    elif any(LONE in g or UNSAFE in g or EXPOSED in g or (COVERED in g and covered_ok) for _, g, _ in kfs):
        level = "review"
    else:
        level = "safe"
    if params.restraint_review and cues and level == "safe":
        level = "review"

    reasons: list[str] = []
    if level != "safe":
        # the strongest occurrence and the number of keyframes, per (group, label)
        agg: dict[tuple[int, str], tuple[float, float, int]] = {}
        for t, g, _ in kfs:
            for group, best in g.items():
                if group == COVERED and not covered_ok:
                    continue  # below the keyframe minimum: decided nothing
                for label, score in best.items():
                    top, top_t, n = agg.get((group, label), (-1.0, t, 0))
                    agg[(group, label)] = (score, t, n + 1) if score > top else (top, top_t, n + 1)
        note = {LONE: " (alone in one keyframe: review)"}
        for (group, label), (score, t, n) in sorted(agg.items(), key=lambda kv: (kv[0][0], -kv[1][0], kv[0][1])):
            reasons.append(_reason(label, score, t, n, note.get(group, "")))
        if params.restraint_review:
            reasons += [
                f"restraint cue ({c.kind}, person {c.person}) {c.start_t:.1f}-{c.end_t:.1f} s over "
                f"{c.keyframes} keyframes: for human review only"
                for c in cues
            ]
    if len(reasons) > params.max_reasons:
        left = len(reasons) - (params.max_reasons - 1)
        reasons = [*reasons[: params.max_reasons - 1], f"... and {left} more"]
    return Verdict(
        level=level,
        reasons=tuple(reasons),
        unsafe_keyframes=n_unsafe,
        review_keyframes=sum(UNSAFE not in g and LONE not in g and bool(g) for _, g, _ in kfs),
    )


# -------------------------------------------------------------------------------- restraint cue


def _pose_arrays(pose: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        box = np.asarray(pose.box, dtype=np.float64)
        kp = np.asarray(pose.keypoints, dtype=np.float64)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"restraint_cues: {where}: expected a pose with .box and .keypoints ({exc})") from exc
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"restraint_cues: {where}: box must be finite x1,y1,x2,y2 with x2>=x1, y2>=y1, got {box}")
    if kp.ndim != 2 or kp.shape[0] <= _R_HIP or kp.shape[1] != 4:
        raise ValueError(f"restraint_cues: {where}: keypoints must be 33 x (x, y, z, visibility), got {kp.shape}")
    return box, kp


def _restraint_kind(kp: np.ndarray, p: SafetyParams) -> str | None:
    """Which cue one pose shows, if any.

    Body scale = max(shoulder width, shoulder-midpoint-to-hip-midpoint length): shoulder width alone
    collapses when a person turns side-on, torso length when the hips are out of frame; both need the
    shoulders seen.
    - wrists_together: both wrists seen and closer than wrist_ratio x scale.
    - wrists_behind_back: both wrists NOT seen while both shoulders, both elbows and both hips are
      (so the arms are in the picture and the hands are hidden, not cropped off), the elbows hang
      below the shoulders, BlazePose's predicted (hidden) wrists lie between the hips horizontally
      (widened by wrist_ratio x scale) and between the shoulders and half a torso below the hips
      vertically, and both lie behind the torso's depth plane (z of shoulders and hips) by
      behind_back_depth x scale. The depth test is what tells hands behind the back from hands
      hidden by a desk or lectern in front of the body; without depth (all z equal) there is no cue.
    """
    vis = kp[:, 3] >= p.min_visibility
    if not (vis[_L_SHOULDER] and vis[_R_SHOULDER]):
        return None
    xy = kp[:, :2]
    shoulder_mid = (xy[_L_SHOULDER] + xy[_R_SHOULDER]) / 2
    hip_mid = (xy[_L_HIP] + xy[_R_HIP]) / 2
    hips_seen = bool(vis[_L_HIP] and vis[_R_HIP])
    torso = float(np.linalg.norm(shoulder_mid - hip_mid)) if hips_seen else 0.0
    scale = max(float(np.linalg.norm(xy[_L_SHOULDER] - xy[_R_SHOULDER])), torso)
    if scale <= 0:
        return None
    if vis[_L_WRIST] and vis[_R_WRIST]:
        gap = float(np.linalg.norm(xy[_L_WRIST] - xy[_R_WRIST]))
        return "wrists_together" if gap < p.wrist_ratio * scale else None
    if not p.behind_back or vis[_L_WRIST] or vis[_R_WRIST]:
        return None
    if not (hips_seen and vis[_L_ELBOW] and vis[_R_ELBOW]):
        return None
    if xy[_L_ELBOW, 1] <= xy[_L_SHOULDER, 1] or xy[_R_ELBOW, 1] <= xy[_R_SHOULDER, 1]:
        return None  # arms raised: not held behind the back
    margin = p.wrist_ratio * scale
    x_lo = min(xy[_L_HIP, 0], xy[_R_HIP, 0]) - margin
    x_hi = max(xy[_L_HIP, 0], xy[_R_HIP, 0]) + margin
    y_lo, y_hi = shoulder_mid[1], hip_mid[1] + torso / 2
    wrists = xy[[_L_WRIST, _R_WRIST]]
    if not ((wrists[:, 0] >= x_lo) & (wrists[:, 0] <= x_hi) & (wrists[:, 1] >= y_lo) & (wrists[:, 1] <= y_hi)).all():
        return None
    torso_z = float(kp[[_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP], 2].mean())
    if not (kp[[_L_WRIST, _R_WRIST], 2] - torso_z > p.behind_back_depth * scale).all():
        return None
    return "wrists_behind_back"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def restraint_cues(frames: Sequence[tuple[float, Sequence[PoseLike]]], params: SafetyParams) -> list[RestraintCue]:
    """Hand positions that a human should look at, from pose keypoints over consecutive keyframes.

    FOR HUMAN REVIEW ONLY. A cue is a geometric fact about keypoints (see `_restraint_kind`): wrists
    held together (also: clapping, praying, holding a cup, clasped hands while talking) or hidden
    behind the back (also: standing at ease). It is never a finding of restraint, and `verdict`
    lets it raise "review" at most, never "unsafe".

    frames: `(t, poses)` per keyframe, t strictly increasing. People are followed from one keyframe to
    the next by greedy box matching (best IoU first, >= person_iou); an unmatched pose starts a new
    person id, and a person missing from a keyframe ends their track. A cue is emitted when one
    person shows the same kind in >= min_consecutive consecutive keyframes.
    Raises ValueError on malformed input (times, boxes, keypoint shape).
    """
    if not isinstance(params, SafetyParams):
        raise ValueError(f"restraint_cues: params must be SafetyParams, got {type(params).__name__}")
    cues: list[RestraintCue] = []
    prev: list[tuple[int, np.ndarray]] = []  # (person id, box) in the previous keyframe
    runs: dict[int, tuple[str, float, float, int]] = {}  # person -> (kind, start_t, last_t, count)
    next_id = 0
    last_t = -math.inf

    def close(person: int) -> None:
        kind, start, end, n = runs.pop(person)
        if n >= params.min_consecutive:
            cues.append(RestraintCue(start_t=start, end_t=end, keyframes=n, kind=kind, person=person))

    for i, frame in enumerate(frames):
        if not isinstance(frame, tuple | list) or len(frame) != 2:
            raise ValueError(f"restraint_cues: frame {i} must be a (t, poses) pair, got {type(frame).__name__}")
        t, poses = frame
        if not isinstance(t, int | float) or not math.isfinite(t) or t <= last_t:
            raise ValueError(f"restraint_cues: frame {i} time {t!r} is not finite and after {last_t}")
        last_t = float(t)
        parsed = [_pose_arrays(pose, f"frame {i} pose {j}") for j, pose in enumerate(poses)]

        # greedy IoU matching with the previous keyframe's people
        pairs = sorted(
            ((_iou(pb, box), a, b) for a, (_, pb) in enumerate(prev) for b, (box, _) in enumerate(parsed)),
            key=lambda x: -x[0],
        )
        ids: list[int | None] = [None] * len(parsed)
        used: set[int] = set()
        for iou, a, b in pairs:
            if iou < params.person_iou or iou <= 0:
                break
            if a not in used and ids[b] is None:
                used.add(a)
                ids[b] = prev[a][0]
        for b in range(len(parsed)):
            if ids[b] is None:
                ids[b] = next_id
                next_id += 1

        current: dict[int, str | None] = {}
        for pid, (_, kp) in zip(ids, parsed, strict=True):
            assert pid is not None
            current[pid] = _restraint_kind(kp, params)
        for person in list(runs):
            if current.get(person) != runs[person][0]:
                close(person)  # gone, cue ended, or changed kind
        for person, kind in current.items():
            if kind is None:
                continue
            if person in runs:
                k, start, _, n = runs[person]
                runs[person] = (k, start, float(t), n + 1)
            else:
                runs[person] = (kind, float(t), float(t), 1)
        prev = [(pid, box) for pid, (box, _) in zip(ids, parsed, strict=True) if pid is not None]
    for person in list(runs):
        close(person)
    return sorted(cues, key=lambda c: (c.start_t, c.person, c.kind))


# ------------------------------------------------------------------------------------------ table

SAFETY_SCHEMA = pa.schema(
    [
        ("kf", pa.int32()),
        ("t", pa.float64()),
        ("label", pa.string()),
        ("score", pa.float32()),
        ("box", pa.list_(pa.float32())),  # x1,y1,x2,y2 in keyframe pixels
    ]
)


def safety_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Per-keyframe labels as Parquet rows (kf, t, label, score, box); rows are typically
    `{"kf": ..., "t": ..., **asdict(label)}`. Zero rows keep the schema."""
    return pa.Table.from_pylist(
        [{"kf": r["kf"], "t": r["t"], "label": r["label"], "score": r["score"], "box": list(r["box"])} for r in rows],
        schema=SAFETY_SCHEMA,
    )
