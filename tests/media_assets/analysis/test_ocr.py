"""OCR on rendered slides with the real PP-OCRv6 models: accuracy (CER), small text, dedupe, bad input."""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont

from media_assets.analysis.ocr import (
    MODEL_ID,
    MediaLine,
    OcrLine,
    OcrModel,
    OcrParams,
    dedupe_lines,
    media_lines_table,
    model_files,
    ocr_table,
)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
W, H = 1280, 720
ENGLISH = [
    "Quarterly results 2026",
    "Crane offline at pier 4",
]
PARAGRAPH = [
    "The harbour authority reported that container",
    "throughput rose by twelve percent while average",
    "waiting times for vessels fell to under six hours.",
]
GERMAN = ["Größe und Übermaß", "Schöne Grüße aus Köln", "Straße"]
SUBTITLE = "Subtitles: the meeting starts at nine o'clock sharp"


def render(lines: list[str], size: int = 48, y0: int = 100, bg=(255, 255, 255), fg=(20, 20, 20)) -> np.ndarray:
    """A 1280x720 RGB slide; BASIC layout keeps "ffl" three letters (no ligature glyph)."""
    img = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size, layout_engine=ImageFont.Layout.BASIC)
    for i, line in enumerate(lines):
        draw.text((80, y0 + int(i * size * 1.6)), line, font=font, fill=fg)
    return np.asarray(img)


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: list[str], lines: list[OcrLine]) -> float:
    """Character error rate of the lines read top to bottom against the reference lines."""
    hyp = "\n".join(line.text for line in sorted(lines, key=lambda r: r.box[1]))
    ref = "\n".join(reference)
    return levenshtein(hyp, ref) / len(ref)


@pytest.fixture(scope="module")
def model() -> OcrModel:
    return OcrModel(OcrParams())


@pytest.fixture(scope="module")
def slides(model: OcrModel) -> dict[str, list[OcrLine]]:
    """One batch for all rendered slides, so the models run once per frame for the whole module."""
    frames = {
        "english": render(ENGLISH + [""] + PARAGRAPH),
        "german": render(GERMAN, size=56),
        "small": render([SUBTITLE], size=20, y0=650, bg=(40, 60, 90), fg=(255, 255, 255)),
    }
    t0 = time.perf_counter()
    out = model(list(frames.values()))
    ms = (time.perf_counter() - t0) * 1000 / len(frames)
    print(f"\nocr: {ms:.0f} ms/frame at {W}x{H}")
    return dict(zip(frames, out, strict=True))


def test_model_files_are_the_bundled_onnx() -> None:
    files = model_files(OcrParams())
    assert [f.name for f in files] == ["PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"]
    assert all(f.is_file() and f.stat().st_size > 1e6 for f in files)
    assert len(model_files(OcrParams(use_angle_cls=True))) == 3
    assert MODEL_ID


def test_params_ignore_unknown_keys() -> None:
    p = OcrParams.from_params({"min_confidence": 0.7, "det_limit_side_len": 640, "nope": 1})
    assert p == OcrParams(min_confidence=0.7, det_limit_side_len=640)


def test_english_cer(slides: dict[str, list[OcrLine]]) -> None:
    lines = slides["english"]
    value = cer(ENGLISH + PARAGRAPH, lines)
    print(f"english CER {value:.4f}")
    assert value <= 0.03, [x.text for x in lines]
    assert all(0.5 <= x.confidence <= 1.0 for x in lines)


def test_german_umlauts_cer(slides: dict[str, list[OcrLine]]) -> None:
    lines = slides["german"]
    value = cer(GERMAN, lines)
    print(f"german CER {value:.4f}")
    assert value <= 0.03, [x.text for x in lines]
    assert any("ß" in x.text for x in lines) and any("Ü" in x.text for x in lines)


def test_boxes_are_in_input_pixels(slides: dict[str, list[OcrLine]]) -> None:
    # "Quarterly results 2026" is drawn at x=80, y=100 with 48 px DejaVu (~ 560 px wide)
    (first,) = [x for x in slides["english"] if x.text.startswith("Quarterly")]
    xs, ys = first.box[0::2], first.box[1::2]
    assert len(first.box) == 8
    assert 60 <= min(xs) <= 95 and 560 <= max(xs) <= 700
    assert 90 <= min(ys) <= 115 and 135 <= max(ys) <= 170


def test_small_subtitle_is_read(slides: dict[str, list[OcrLine]]) -> None:
    lines = slides["small"]
    value = cer([SUBTITLE], lines)
    print(f"20 px subtitle CER {value:.4f}")
    assert value <= 0.05, [x.text for x in lines]
    assert min(x.box[1] for x in lines) > 630  # at the bottom, where it was drawn


def test_subtitle_on_full_hd_survives_the_detector_cap(model: OcrModel) -> None:
    # 1920 px is shrunk to 960 for detection: 18 px text becomes 9 px, still found (at 640 it is lost)
    img = Image.new("RGB", (1920, 1080), (40, 60, 90))
    font = ImageFont.truetype(FONT, 18, layout_engine=ImageFont.Layout.BASIC)
    ImageDraw.Draw(img).text((200, 1010), SUBTITLE, font=font, fill=(255, 255, 255))
    (lines,) = model([np.asarray(img)])
    value = cer([SUBTITLE], lines)
    print(f"18 px subtitle on 1920x1080 CER {value:.4f}")
    assert value <= 0.05, [x.text for x in lines]


def test_blank_and_bad_images(model: OcrModel, caplog: pytest.LogCaptureFixture) -> None:
    good = render(["Straße"], size=64)
    batch = [
        np.full((H, W, 3), 255, np.uint8),  # blank
        np.zeros((0, 0, 3), np.uint8),  # zero-size
        good.astype(np.float32),  # wrong dtype
        good,
    ]
    with caplog.at_level(logging.WARNING, logger="media_assets.analysis.ocr"):
        blank, empty, wrong, ok = model(batch)
    assert blank == [] and empty == [] and wrong == []
    assert [x.text for x in ok] == ["Straße"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def _line(text: str, conf: float = 0.95) -> OcrLine:
    return OcrLine(text=text, confidence=conf, box=(0.0,) * 8)


def test_dedupe_merges_repeats_and_keeps_distinct_lines() -> None:
    frames = [
        (0.0, [_line("Quarterly results 2026", 0.90), _line("Crane offline at pier 4")]),
        (4.0, [_line("quarterly  results 2026", 0.99)]),  # case/space differences
        (8.0, [_line("Quarterly resuIts 2026", 0.80), _line("Crane offline at pier 5")]),  # OCR slip; new number
    ]
    lines = dedupe_lines(frames)
    assert [m.text for m in lines] == ["quarterly  results 2026", "Crane offline at pier 4", "Crane offline at pier 5"]
    q = lines[0]
    assert (q.first_t, q.last_t, q.frames, q.confidence) == (0.0, 8.0, 3, 0.99)
    assert (lines[1].first_t, lines[1].last_t, lines[1].frames) == (0.0, 0.0, 1)
    assert (lines[2].first_t, lines[2].last_t) == (8.0, 8.0)
    assert dedupe_lines([]) == [] and dedupe_lines([(1.0, [])]) == []


def test_dedupe_on_real_ocr_output(model: OcrModel, slides: dict[str, list[OcrLine]]) -> None:
    other = model([render(["Safety first: wear helmets"], size=64)])[0]
    lines = dedupe_lines([(0.0, slides["german"]), (4.0, slides["german"]), (8.0, slides["german"] + other)])
    assert len(lines) == len(GERMAN) + 1
    assert all(m.first_t == 0.0 and m.last_t == 8.0 and m.frames == 3 for m in lines[: len(GERMAN)])
    assert lines[-1].first_t == 8.0 and "helmets" in lines[-1].text


def test_tables_have_fixed_schemas() -> None:
    empty = ocr_table([])
    assert empty.num_rows == 0 and empty.schema.names == ["kf", "t", "text", "confidence", "box"]
    row = {"kf": 3, "t": 12.0, "text": "Größe", "confidence": 0.98, "box": (1.0,) * 8, "extra": "ignored"}
    table = ocr_table([row])
    assert table.to_pylist()[0]["box"] == [1.0] * 8 and table.column("text")[0].as_py() == "Größe"
    media = media_lines_table([MediaLine("Größe", 0.0, 8.0, 3, 0.99)])
    assert media.num_rows == 1 and media.schema.field("frames").type == pa.int32()
    assert media_lines_table([]).num_rows == 0
