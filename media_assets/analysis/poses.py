"""Find the people in keyframes and their body pose (33 BlazePose keypoints each).

Poses say how many people a shot shows, where they stand and what they do (raised arms, sitting,
lying), and the safety step uses them to tell a body from a face. The model is MediaPipe's
BlazePose "full": the two `.tflite` files of the mediapipe wheel, run with ai-edge-litert, so
mediapipe's numpy<2 runtime is not needed. The graph around the networks is re-implemented here
after mediapipe's `pose_detection_cpu` / `pose_detection_to_roi` / `pose_landmark_by_roi_cpu`
(anchors, box decoding, weighted NMS, the rotated body crop, heatmap refinement, projection back),
and was checked against mediapipe 0.10.21 itself: same detection, same crop, visible keypoints
~1 px apart on average. mediapipe's own Pose solution tracks one person; here every detection
gets its own crop, so several people per frame are found (the detector, trained for one person,
still finds each person whose face shows and who is large enough: wide frames are also scanned
in square windows, see `PoseParams.tiles`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.images import rgb_image
from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "blazepose-full-v1"

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)  # 33

_DET_FILE = "pose_detection.tflite"
_LMK_FILE = "pose_landmark_full.tflite"
_DET_SIZE = 224  # detector input, square, letterboxed
_LMK_SIZE = 256  # landmark model input: the rotated square body crop
_LMK_RAW = 39  # the model outputs 33 body + 6 auxiliary landmarks (used by mediapipe for tracking)
_HEATMAP_KERNEL = 7  # RefineLandmarksFromHeatmapCalculator's kernel_size in the pose graph
_HEATMAP_MIN_CONF = 0.5  # ... and its min_confidence_to_refine
_TILE_RATIO = 1.2  # frames longer than this x their short side get extra detector windows
_TILE_OVERLAP = 0.2  # ... overlapping by this fraction of a window at least


@dataclass(frozen=True)
class PoseParams:
    """Settings that change which people are found and where their keypoints land (config `poses:`)."""

    min_detection_score: float = 0.5  # detector sigmoid score (mediapipe's min_score_thresh)
    min_presence: float = 0.5  # landmark model's "pose present in the crop" flag (mediapipe's 0.5)
    max_people: int = 6  # per keyframe, best detection score first
    nms_iou: float = 0.3  # detections overlapping more than this are merged (weighted NMS)
    roi_scale: float = 1.25  # body crop = 2 * |hip centre -> body scale point| * roi_scale (mediapipe)
    # One person seen in several detector windows (or twice in one) gives head boxes of unequal
    # size (the detector's box for a small person is inflated), so IoU does not pair them: two
    # detections whose head-box centres lie closer than this x the smaller box side are one person.
    same_person: float = 0.5
    refine_with_heatmap: bool = True  # mediapipe's heatmap refinement of x, y (7x7 kernel)
    tiles: bool = True  # wide/tall frames: also detect in square windows (see PoseModel._detect)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PoseParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class Pose:
    """One person in one image.

    `box` is x1,y1,x2,y2 in image pixels around the keypoints with visibility >= 0.5 (clipped to
    the image), or the detector's box (head/upper body) when none is visible. `score` is the
    detector's 0..1 score. `keypoints` are 33 (x, y, z, visibility) in `KEYPOINT_NAMES` order:
    x, y in image pixels (0,0 = top-left corner; a keypoint outside the frame, e.g. hidden feet,
    is extrapolated past the edge and has a low visibility), z the depth relative to the hip
    centre in the same pixel scale as x (smaller = nearer the camera; rough), visibility the
    model's 0..1 probability that the keypoint is visible (not occluded, inside the frame)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float, float, float], ...]


def model_files(params: PoseParams) -> list[Path]:
    """The weight files this configuration runs, to version results."""
    from resources.model_files import mediapipe_model

    return [mediapipe_model(_DET_FILE), mediapipe_model(_LMK_FILE)]


def _ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in 0..1 units, as mediapipe's SsdAnchorsCalculator makes them for
    pose detection: num_layers 5, strides [8, 16, 32, 32, 32], aspect ratio 1 plus the
    interpolated-scale anchor (2 per layer and cell), fixed_anchor_size (w = h = 1, so they drop
    out of the decoding). Layers of equal stride share one grid: 28x28x2 + 14x14x2 + 7x7x6."""
    strides = [8, 16, 32, 32, 32]
    out = []
    layer = 0
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2
            last += 1
        grid = math.ceil(_DET_SIZE / strides[layer])
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        ys, xs = np.meshgrid(c, c, indexing="ij")  # row-major: y outer, x inner, then anchor
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
        layer = last
    return np.concatenate(out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -100.0, 100.0)))  # mediapipe clips logits at +-100


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(boxes[:, 0], box[0])
    iy1 = np.maximum(boxes[:, 1], box[1])
    ix2 = np.minimum(boxes[:, 2], box[2])
    iy2 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    own = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + own - inter, 1e-9)


def _weighted_nms(dets: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[tuple[np.ndarray, float]]:
    """mediapipe's WEIGHTED non-max suppression over rows of [x1,y1,x2,y2, keypoints...]: each
    cluster of boxes overlapping the best one by more than `iou_thr` becomes their score-weighted
    mean (box and keypoints alike), with the best one's score."""
    remaining = np.argsort(-scores, kind="stable")
    out: list[tuple[np.ndarray, float]] = []
    while remaining.size:
        top = remaining[0]
        iou = _iou(dets[top, :4], dets[remaining, :4])
        members = remaining[iou > iou_thr]
        members = members if members.size else remaining[:1]
        w = scores[members]
        out.append(((dets[members] * w[:, None]).sum(0) / w.sum(), float(scores[top])))
        remaining = remaining[iou <= iou_thr]
        remaining = remaining[remaining != top]
    return out


def _warp(img: np.ndarray, m: np.ndarray, size: int, replicate: bool) -> np.ndarray:
    """Sample `img` into a size x size float32 RGB image: output pixel (u, v) takes the bilinear
    value at source pixel m @ (u, v, 1) (pixel-index coordinates); outside the image, edge pixels
    repeated or zeros. cv2 (what mediapipe uses) when installed, else numpy."""
    try:
        import cv2
    except ImportError:
        return _warp_numpy(img, m, size, replicate)
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(img, m, (size, size), flags=flags, borderMode=border).astype(np.float32)


def _warp_numpy(img: np.ndarray, m: np.ndarray, size: int, replicate: bool) -> np.ndarray:
    """`_warp` without cv2 (same result within interpolation rounding)."""
    h, w = img.shape[:2]
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    sy = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    if replicate:
        sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = img.astype(np.float32)
    out = np.zeros((size, size, img.shape[2]), np.float32)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        vals = src[np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)]
        out += np.where(inside[..., None], vals, 0.0) * wgt
    return np.rint(out)  # cv2 returns uint8 for uint8 input


class PoseModel:
    """BlazePose detector and landmark networks, loaded once. `__call__` runs the detector on each
    image, then the landmark model on one rotated body crop per detected person.

    The tflite models run on the CPU only (XNNPACK); `device="cuda"` is accepted and runs on the
    CPU too (one person costs ~10-20 ms, not worth a GPU delegate)."""

    def __init__(self, params: PoseParams, device: str = "cpu") -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.params = params
        if device not in ("cpu", "cuda"):
            raise ValueError(f"poses: unknown device {device!r} (cpu | cuda)")
        if device == "cuda":
            log.info("poses: the BlazePose tflite models run on the CPU (no GPU delegate)")
        det_file, lmk_file = model_files(params)
        self._det = Interpreter(model_path=str(det_file))
        self._det.allocate_tensors()
        self._det_in = self._det.get_input_details()[0]["index"]
        outs = {d["shape"][-1]: d["index"] for d in self._det.get_output_details()}
        self._det_reg, self._det_cls = outs[12], outs[1]  # (1,2254,12) box + 4 keypoints, (1,2254,1) logits
        self._anchors = _ssd_anchors()
        if len(self._anchors) != self._det.get_output_details()[0]["shape"][1]:
            raise RuntimeError(f"{det_file}: anchor count does not match the model's outputs")

        self._lmk = Interpreter(model_path=str(lmk_file))
        self._lmk.allocate_tensors()
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        by_shape = {tuple(d["shape"][1:]): d["index"] for d in self._lmk.get_output_details()}
        self._lmk_out = by_shape[(_LMK_RAW * 5,)]  # 39 x (x, y, z, visibility, presence) in crop pixels
        self._lmk_flag = by_shape[(1,)]  # pose present in the crop, a probability
        self._lmk_heatmap = by_shape[(64, 64, _LMK_RAW)]

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[Pose]]:
        checked = [rgb_image(img, i, "poses") for i, img in enumerate(images)]
        return [self.detect(img) for img in checked]

    def detect(self, img: np.ndarray) -> list[Pose]:
        """Poses of one RGB uint8 image, best detection score first."""
        img = rgb_image(img, 0, "poses")
        p = self.params
        poses: list[Pose] = []
        for det, score in self._detect(img):
            if len(poses) >= p.max_people:
                break
            pose = self._landmarks(img, det, score)  # None: the crop shows no pose after all
            if pose is not None:
                poses.append(pose)
        return poses

    def _detect(self, img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Detections as ([x1,y1,x2,y2, 4 keypoints x,y] in image pixels, score), best first.

        The detector sees the frame letterboxed to 224x224, so in a wide frame (16:9, or two
        people side by side) each person shrinks and the weaker ones fall under the threshold.
        With `tiles`, square windows of the frame's short side across its long side are run too,
        and all detections merged by one weighted NMS."""
        h, w = img.shape[:2]
        dets = self._detect_window(img, 0, 0, w, h, (False, False, False, False))
        if self.params.tiles and max(h, w) > _TILE_RATIO * min(h, w):
            side = min(h, w)
            for start in _tile_starts(max(h, w), side):
                if w >= h:
                    x0, y0, x1, y1 = start, 0, start + side, h
                else:
                    x0, y0, x1, y1 = 0, start, w, start + side
                dets += self._detect_window(img, x0, y0, x1, y1, (x0 > 0, y0 > 0, x1 < w, y1 < h))
        return _one_per_person(dets, self.params.same_person)

    def _detect_window(
        self, img: np.ndarray, x0: int, y0: int, x1: int, y1: int, interior: tuple[bool, bool, bool, bool]
    ) -> list[tuple[np.ndarray, float]]:
        """Raw (pre-NMS) detections in img[y0:y1, x0:x1], in image pixels. One whose (head) box
        reaches over an `interior` window edge (left, top, right, bottom) is a person cut by the
        window: dropped, the neighbouring window or the whole frame sees them whole."""
        h, w = y1 - y0, x1 - x0
        # Letterbox to 224x224 keeping the aspect ratio, black borders, values in [-1, 1]; like
        # mediapipe, the square around the window maps corner to corner onto the input.
        s = _DET_SIZE / max(h, w)
        px, py = (_DET_SIZE - s * w) / 2, (_DET_SIZE - s * h) / 2
        m = np.array([[1 / s, 0, x0 - px / s], [0, 1 / s, y0 - py / s]], np.float64)
        x = _warp(img, m, _DET_SIZE, replicate=False) / 127.5 - 1.0
        self._det.set_tensor(self._det_in, x[None].astype(np.float32))
        self._det.invoke()
        reg = self._det.get_tensor(self._det_reg)[0].astype(np.float64)
        scores = _sigmoid(self._det.get_tensor(self._det_cls)[0, :, 0].astype(np.float64))
        keep = scores >= self.params.min_detection_score
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self._anchors[keep].astype(np.float64)
        # Offsets are in 224-px units from the anchor centre (x before y), box as centre + size.
        xy = reg.reshape(len(reg), 6, 2) / _DET_SIZE + anchors[:, None, :]
        half = reg[:, 2:4] / _DET_SIZE / 2
        boxes = np.concatenate([xy[:, 0] - half, xy[:, 0] + half], axis=1)
        dets = np.concatenate([boxes, xy[:, 2:].reshape(len(reg), 8)], axis=1)
        # 0..1 letterbox units -> image pixels (x, y alternate in every row)
        dets = (dets * _DET_SIZE - np.tile([px, py], 6)) / s + np.tile([x0, y0], 6)
        cut = np.zeros(len(dets), bool)
        margin = 2.0
        for side, (edge, col, sign) in enumerate(((x0, 0, -1), (y0, 1, -1), (x1, 2, 1), (y1, 3, 1))):
            if interior[side]:
                cut |= sign * (dets[:, col] - edge) > -margin
        dets, scores = dets[~cut], scores[~cut]
        return _weighted_nms(dets, scores, self.params.nms_iou) if len(dets) else []

    def _landmarks(self, img: np.ndarray, det: np.ndarray, score: float) -> Pose | None:
        p = self.params
        h, w = img.shape[:2]
        # ROI as mediapipe's AlignmentPointsRectsCalculator: centre = hip centre (keypoint 0),
        # size = twice the distance to the body scale point (keypoint 1, towards the head),
        # rotated so that this vector points up; then scaled by 1.25 (RectTransformationCalculator).
        (cx, cy), (ex, ey) = det[4:6], det[6:8]
        size = 2.0 * math.hypot(ex - cx, ey - cy) * p.roi_scale
        if size < 1.0:
            return None
        angle = math.pi / 2 - math.atan2(-(ey - cy), ex - cx)
        angle = angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))  # to [-pi, pi)
        cos, sin = math.cos(angle), math.sin(angle)
        # crop pixel (u, v) -> image point centre + R(angle) @ (u / 256 - 0.5, v / 256 - 0.5) * size: the
        # crop's corners on the ROI's, as mediapipe's ImageToTensorCalculator maps them
        k = size / _LMK_SIZE
        r = np.array([[cos * k, -sin * k], [sin * k, cos * k]])
        t = np.array([cx, cy]) - r @ np.array([_LMK_SIZE / 2, _LMK_SIZE / 2])
        m = np.concatenate([r, t[:, None]], axis=1)
        crop = _warp(img, m, _LMK_SIZE, replicate=True) / 255.0
        self._lmk.set_tensor(self._lmk_in, crop[None].astype(np.float32))
        self._lmk.invoke()
        presence = float(self._lmk.get_tensor(self._lmk_flag).ravel()[0])
        if presence < p.min_presence:
            return None
        raw = self._lmk.get_tensor(self._lmk_out).reshape(_LMK_RAW, 5)[:NUM_KEYPOINTS].astype(np.float64)
        xy = raw[:, :2].copy()  # crop pixels (0..256)
        if p.refine_with_heatmap:
            xy = _refine_from_heatmap(xy, self._lmk.get_tensor(self._lmk_heatmap)[0])
        img_xy = xy @ r.T + t  # back to image pixels
        z = raw[:, 2] * k  # crop pixels -> image pixels, like x
        vis = _sigmoid(raw[:, 3])
        kps = tuple((float(a), float(b), float(c), float(v)) for (a, b), c, v in zip(img_xy, z, vis, strict=True))
        seen = vis >= 0.5
        if seen.any():
            x1, y1 = img_xy[seen].min(0)
            x2, y2 = img_xy[seen].max(0)
        else:
            x1, y1, x2, y2 = det[:4]
        box = (
            float(np.clip(x1, 0, w)),
            float(np.clip(y1, 0, h)),
            float(np.clip(x2, 0, w)),
            float(np.clip(y2, 0, h)),
        )
        return Pose(box=box, score=score, keypoints=kps)


def _tile_starts(length: int, tile: int) -> list[int]:
    """Evenly spread starts of windows of `tile` px covering `length`, overlapping by >= tile/5:
    a head box of up to that size lies wholly inside some window (bigger heads are found in the
    whole-frame pass). A 16:9 frame gets two windows."""
    if length <= tile:
        return [0]
    n = max(2, math.ceil((length - tile * _TILE_OVERLAP) / (tile * (1 - _TILE_OVERLAP))))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """mediapipe's RefineLandmarksFromHeatmapCalculator: move each landmark to the confidence-
    weighted mean cell of the 7x7 heatmap window around it, when that window's peak is >= 0.5."""
    hm_h, hm_w, _ = heatmap.shape
    out = xy.copy()
    off = (_HEATMAP_KERNEL - 1) // 2
    for i in range(len(xy)):
        col = int(xy[i, 0] / _LMK_SIZE * hm_w)  # C++ float -> int truncates toward zero
        row = int(xy[i, 1] / _LMK_SIZE * hm_h)
        if not (0 <= col < hm_w and 0 <= row < hm_h):
            continue
        r0, r1 = max(0, row - off), min(hm_h, row + off + 1)
        c0, c1 = max(0, col - off), min(hm_w, col + off + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, i].astype(np.float64))
        total = conf.sum()
        if total > 0 and conf.max() >= _HEATMAP_MIN_CONF:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i, 0] = (cols * conf).sum() / total / hm_w * _LMK_SIZE
            out[i, 1] = (rows * conf).sum() / total / hm_h * _LMK_SIZE
    return out


def _one_per_person(dets: list[tuple[np.ndarray, float]], same: float) -> list[tuple[np.ndarray, float]]:
    """Best-first detections, dropping any whose head box centre lies within `same` x the smaller
    box side of a better one's (the same person, seen in another window)."""
    kept: list[tuple[np.ndarray, float]] = []
    for det, score in sorted(dets, key=lambda d: -d[1]):
        c, side = (det[:2] + det[2:4]) / 2, min(det[2] - det[0], det[3] - det[1])
        if any(np.hypot(*(c - (k[:2] + k[2:4]) / 2)) < same * min(side, k[2] - k[0], k[3] - k[1]) for k, _ in kept):
            continue
        kept.append((det, score))
    return kept


def person_count_summary(frames: Sequence[Sequence[Pose]]) -> dict[str, Any]:
    """Media-level pose facts for asset metadata: the most people in one keyframe, how many
    keyframes show anyone, and the mean keypoint visibility over all poses (None without poses)."""
    vis = [kp[3] for poses in frames for pose in poses for kp in pose.keypoints]
    return {
        "keyframes": len(frames),
        "max_people": max((len(poses) for poses in frames), default=0),
        "keyframes_with_people": sum(1 for poses in frames if poses),
        "mean_visibility": float(np.mean(vis)) if vis else None,
    }


POSES_SCHEMA = pa.schema(
    [
        ("kf", pa.int32()),
        ("t", pa.float64()),
        ("person", pa.int32()),  # index within the keyframe, best score first
        ("box", pa.list_(pa.float32(), 4)),  # x1,y1,x2,y2 in keyframe pixels
        ("score", pa.float32()),
        # 33 x (x px, y px, z, visibility) in KEYPOINT_NAMES order
        ("keypoints", pa.list_(pa.list_(pa.float32(), 4), NUM_KEYPOINTS)),
    ]
)


def poses_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Per-keyframe poses as Parquet rows; rows carry kf, t, person and the `Pose` fields (a row
    without `person` is numbered by its order within its keyframe). Zero rows keep the schema."""
    out = []
    seen: dict[Any, int] = {}
    for r in rows:
        n = seen.get(r["kf"], 0)
        seen[r["kf"]] = n + 1
        out.append(
            {
                "kf": r["kf"],
                "t": r["t"],
                "person": r.get("person", n),
                "box": [float(v) for v in r["box"]],
                "score": r["score"],
                "keypoints": [[float(v) for v in kp] for kp in r["keypoints"]],
            }
        )
    return pa.Table.from_pylist(out, schema=POSES_SCHEMA)


def pose_from_row(row: Mapping[str, Any]) -> Pose:
    """A `Pose` back from a `poses_table` row (e.g. `table.to_pylist()`)."""
    return Pose(
        box=tuple(float(v) for v in row["box"]),  # type: ignore[arg-type]
        score=float(row["score"]),
        keypoints=tuple(tuple(float(v) for v in kp) for kp in row["keypoints"]),  # type: ignore[misc]
    )
