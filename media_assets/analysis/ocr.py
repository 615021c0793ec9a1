"""Read the text shown in keyframes (slides, captions, signs) and fold it into one line per text.

RapidOCR 3.x runs PaddleOCR's PP-OCRv6 "small" detector and multilingual recogniser as ONNX
models that ship inside the `rapidocr` wheel, so nothing is downloaded at run time. That one
recogniser covers English and German (ä ö ü ß read correctly) and ~50 other Latin-script languages,
so there is no per-language model to pick. The per-keyframe lines are then deduplicated at media
level: a slide held for a minute is one line with its first and last time, not 15 copies.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.params import known_fields
from ops_gpu.device import onnx_providers

log = logging.getLogger(__name__)

MODEL_ID = "rapidocr-ppocrv6-small"

# The wheel's own copies of the default models (rapidocr/default_models.yaml routes PP-OCRv6
# small det/rec for every supported language to these two "multi" files).
_DET_FILE = "PP-OCRv6_det_small.onnx"
_REC_FILE = "PP-OCRv6_rec_small.onnx"
_CLS_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


@dataclass(frozen=True)
class OcrParams:
    """Settings that change which text is found (config `ocr:`)."""

    min_confidence: float = 0.5
    # The detector sees the frame shrunk so its long side is at most this, and loses text below
    # roughly 7-9 px in ITS input. Measured (white subtitle on dark, DejaVuSans): on 1280x720 both
    # 640 and 960 read 12-20 px text (10 px: not reliably); on 1920x1080, 640 loses even 20 px
    # subtitles while 960 reads 18 px and up. 640 is ~1.5-2x faster per frame on 2 CPU cores with
    # identical text on big slide text, but keyframes come up to 1920 px, so 960 is the default.
    det_limit_side_len: int = 960
    # The 180-degree angle classifier: keyframe text is upright, and the classifier costs time and
    # can flip a short upright word, so it is off.
    use_angle_cls: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> OcrParams:
        return cls(**known_fields(cls, params))


@dataclass(frozen=True)
class OcrLine:
    """One text line in one image; `box` is its 4 corners x1,y1,...,x4,y4 in input-image pixels."""

    text: str
    confidence: float
    box: tuple[float, ...]


@dataclass(frozen=True)
class MediaLine:
    """One distinct text of a whole media file: when it was first/last seen and on how many frames."""

    text: str  # the most confident reading
    first_t: float
    last_t: float
    frames: int
    confidence: float  # of that reading


def _models_dir() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


def model_files(params: OcrParams) -> list[Path]:
    """The ONNX files this configuration runs (the wheel's bundled models), to version results."""
    names = [_DET_FILE, _REC_FILE] + ([_CLS_FILE] if params.use_angle_cls else [])
    return [_models_dir() / n for n in names]


class OcrModel:
    """RapidOCR loaded once; per image it runs detection, then batched line recognition."""

    def __init__(self, params: OcrParams, device: str = "cpu") -> None:
        from rapidocr import RapidOCR

        self.params = params
        files = model_files(params)
        for f in files:
            if not f.exists():
                raise FileNotFoundError(f"{f} is missing: reinstall the rapidocr wheel")
        cfg: dict[str, Any] = {
            "Global.text_score": params.min_confidence,
            "Global.use_cls": params.use_angle_cls,
            # rapidocr warns on every frame without text; our own warnings cover bad images.
            "Global.log_level": "error",
            # "max": only ever shrink (rapidocr's default "min" 736 upscales every 720p frame).
            "Det.limit_type": "max",
            "Det.limit_side_len": params.det_limit_side_len,
            # Explicit paths: rapidocr never tries to download or re-hash its defaults.
            "Det.model_path": str(files[0]),
            "Rec.model_path": str(files[1]),
            "EngineConfig.onnxruntime.use_cuda": "CUDAExecutionProvider" in onnx_providers(device),
        }
        if params.use_angle_cls:
            cfg["Cls.model_path"] = str(files[2])
        self._engine = RapidOCR(params=cfg)

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[OcrLine]]:
        # RapidOCR's detector takes one image at a time (frames differ in size); the recogniser
        # batches the text lines of each image.
        return [self._one(i, img) for i, img in enumerate(images)]

    def _one(self, i: int, img: np.ndarray) -> list[OcrLine]:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            log.warning("ocr: image %d is not an RGB uint8 HxWx3 array (%s); skipped", i, _describe(img))
            return []
        if img.shape[0] == 0 or img.shape[1] == 0:
            log.warning("ocr: image %d is empty (%s); skipped", i, img.shape)
            return []
        try:
            # numpy input is taken as BGR (OpenCV order), which the Paddle models were trained on.
            # With det+rec on, the result is a RapidOCROutput (txts/scores/boxes, all None when no text).
            res: Any = self._engine(np.ascontiguousarray(img[..., ::-1]))
        except Exception as exc:  # one broken frame must not sink the batch
            log.warning("ocr: image %d failed: %s", i, exc)
            return []
        if res.txts is None or res.boxes is None or res.scores is None:
            return []  # no text found
        return [
            OcrLine(text=str(t).strip(), confidence=float(s), box=tuple(float(v) for v in np.asarray(b).reshape(-1)))
            for t, s, b in zip(res.txts, res.scores, res.boxes, strict=True)
            if str(t).strip() and float(s) >= self.params.min_confidence
        ]


def _describe(img: Any) -> str:
    return f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


_DIGITS = re.compile(r"\d+")


def dedupe_lines(
    frames: Sequence[tuple[float, Sequence[OcrLine]]],
    min_ratio: float = 0.9,
) -> list[MediaLine]:
    """One line per distinct text of a media file, in order of first appearance.

    `frames` are (t, lines of that keyframe). Texts match after normalising whitespace and case, or
    when difflib's similarity is >= `min_ratio` (OCR reads the same slide slightly differently on
    different frames) - but only if their numbers agree, so "pier 4" and "pier 5" stay apart.
    """
    groups: list[dict[str, Any]] = []
    by_key: dict[str, int] = {}
    for t, lines in sorted(frames, key=lambda f: f[0]):  # stable: equal times keep input order
        for line in lines:
            key = _norm(line.text)
            if not key:
                continue
            gi = by_key.get(key)
            if gi is None:
                gi = _fuzzy_match(key, groups, min_ratio)
            if gi is None:
                groups.append(
                    {"key": key, "text": line.text, "conf": line.confidence, "first": t, "last": t, "ts": set()}
                )
                gi = len(groups) - 1
            by_key[key] = gi
            g = groups[gi]
            g["ts"].add(t)
            g["first"], g["last"] = min(g["first"], t), max(g["last"], t)
            if line.confidence > g["conf"]:
                g["text"], g["conf"] = line.text, line.confidence
    return [
        MediaLine(text=g["text"], first_t=g["first"], last_t=g["last"], frames=len(g["ts"]), confidence=g["conf"])
        for g in groups
    ]


def _fuzzy_match(key: str, groups: list[dict[str, Any]], min_ratio: float) -> int | None:
    digits = _DIGITS.findall(key)
    best, best_ratio = None, min_ratio
    for gi, g in enumerate(groups):
        sm = difflib.SequenceMatcher(None, key, g["key"], autojunk=False)
        # quick_ratio is an upper bound of ratio: cheap rejection of clearly different lines.
        if sm.quick_ratio() < best_ratio or _DIGITS.findall(g["key"]) != digits:
            continue
        r = sm.ratio()
        if r >= best_ratio:
            best, best_ratio = gi, r
    return best


OCR_SCHEMA = pa.schema(
    [
        ("kf", pa.int32()),
        ("t", pa.float64()),
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("box", pa.list_(pa.float32())),  # x1,y1,...,x4,y4 in keyframe pixels
    ]
)

MEDIA_LINES_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("first_t", pa.float64()),
        ("last_t", pa.float64()),
        ("frames", pa.int32()),
        ("confidence", pa.float32()),
    ]
)


def ocr_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Per-keyframe OCR lines as Parquet rows (kf, t, text, confidence, box); empty keeps the schema."""
    return pa.Table.from_pylist(
        [{k: (list(r[k]) if k == "box" else r[k]) for k in OCR_SCHEMA.names} for r in rows], schema=OCR_SCHEMA
    )


def media_lines_table(lines: Sequence[MediaLine]) -> pa.Table:
    """The deduplicated text of one media file, for search and the report."""
    return pa.Table.from_pylist([asdict(m) for m in lines], schema=MEDIA_LINES_SCHEMA)
