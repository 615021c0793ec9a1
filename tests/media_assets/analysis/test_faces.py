"""Real BlazeFace + dlib models on real photos: faces are found, and embeddings tell people apart."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image, ImageEnhance

from media_assets.analysis.faces import (
    DISTANCE_THRESHOLD,
    FACES_SCHEMA,
    MODEL_ID,
    Face,
    FaceModel,
    FaceParams,
    face_distance,
    face_from_row,
    faces_table,
    media_face_summary,
    model_files,
)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel(FaceParams())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


def _opencv_image(name: str) -> np.ndarray:
    path = OPENCV_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    return np.asarray(Image.open(path).convert("RGB"))


def _one_face(faces: list[Face]) -> Face:
    assert len(faces) == 1, [f.box for f in faces]
    return faces[0]


def test_model_files_exist_and_params_ignore_unknown_keys() -> None:
    p = FaceParams.from_params({"min_size": 40, "unknown": 1})
    assert p == FaceParams(min_size=40) and p.min_score == 0.6 and p.detector == "blazeface"
    files = model_files(p)
    assert len(files) == 3 and all(f.exists() for f in files)
    assert len(model_files(FaceParams(detector="hog"))) == 2  # HOG ships inside dlib
    assert MODEL_ID


def test_astronaut_and_hopper_each_one_face_and_different_people(
    model: FaceModel, astronaut: np.ndarray, hopper: np.ndarray
) -> None:
    ast_faces, hop_faces = model([astronaut, hopper])
    a, h = _one_face(ast_faces), _one_face(hop_faces)
    for f in (a, h):
        assert f.score >= 0.8
        assert len(f.embedding) == 128 and all(isinstance(v, float) for v in f.embedding)
        assert len(f.landmarks) == 5
        x1, y1, x2, y2 = f.box
        # the eyes and nose lie inside the face box
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in f.landmarks)
        thumb = Image.open(io.BytesIO(f.thumbnail))
        assert thumb.format == "JPEG" and thumb.size == (112, 112)
    # Eileen Collins' face: measured box (171, 65, 280, 173)
    assert a.box[0] == pytest.approx(171, abs=15) and a.box[1] == pytest.approx(65, abs=15)
    assert a.box[2] == pytest.approx(280, abs=15) and a.box[3] == pytest.approx(173, abs=15)
    # measured 0.715 (HOG boxes: 0.698)
    assert face_distance(a.embedding, h.embedding) > DISTANCE_THRESHOLD


def _augmented(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    return {
        "crop": img[h // 12 : h * 3 // 5, w // 5 : w * 4 // 5].copy(),
        "brighter": np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(1.4)),
        "darker": (img * 0.6).astype(np.uint8),
        "flip": img[:, ::-1].copy(),
    }


def test_same_face_augmented_stays_within_threshold(
    model: FaceModel, astronaut: np.ndarray, hopper: np.ndarray
) -> None:
    # measured: astronaut crop 0.07, brighter 0.26, darker 0.14, flip 0.19; hopper all <= 0.2
    aug_a, aug_h = _augmented(astronaut), _augmented(hopper)
    results = model([astronaut, hopper, *aug_a.values(), *aug_h.values()])
    a, h = _one_face(results[0]).embedding, _one_face(results[1]).embedding
    cases = [(f"astronaut {k}", a, h) for k in aug_a] + [(f"hopper {k}", h, a) for k in aug_h]
    for (name, same, other), faces in zip(cases, results[2:], strict=True):
        emb = _one_face(faces).embedding
        assert face_distance(emb, same) < 0.35, name  # well inside 0.6
        assert face_distance(emb, other) > DISTANCE_THRESHOLD, name


def test_images_without_faces(model: FaceModel) -> None:
    blank = np.zeros((720, 1280, 3), np.uint8)
    gray = np.full((480, 640, 3), 128, np.uint8)
    assert model([blank, gray, skimage.data.chelsea(), skimage.data.coffee()]) == [[], [], [], []]


def test_slide_text_is_not_a_face(model: FaceModel, tmp_path: Path) -> None:
    # Glyphs of these slides scored 0.61-0.71 in a tile and were stored as faces of nobody on every
    # slide talk until tile-only detections needed tile_min_score (real small faces: 0.82-0.94).
    from media_assets.service.samples import render_slide

    frames = []
    for i, (title, band) in enumerate(
        [("Harbour operations review", (20, 20, 20)), ("Berth schedule for March", (154, 82, 78))]
    ):
        render_slide(title, band, tmp_path / f"{i}.png", (1280, 720), page=f"{i + 1} / 20")
        frames.append(np.asarray(Image.open(tmp_path / f"{i}.png").convert("RGB")))
    frames.append(np.asarray(Image.open(_sample_talk_slide(tmp_path)).convert("RGB")))
    assert model(frames) == [[], [], []]
    assert FaceModel(FaceParams(tile_min_score=0.6))(frames[:1]) != [[]]  # what the threshold removes


def _sample_talk_slide(tmp_path: Path) -> Path:
    from media_assets.service.samples import SLIDES, TALK_SIZE, render_slide

    out = tmp_path / "sample-slide.png"
    render_slide(SLIDES[3][0], SLIDES[3][2], out, TALK_SIZE, page=f"4 / {len(SLIDES)}")
    return out


def test_small_faces_in_a_720p_frame_found_and_tiny_ones_dropped(model: FaceModel, astronaut: np.ndarray) -> None:
    # The same face at ~28, ~50 and ~75 px in a 1280x720 frame: the whole-frame 192x192 pass alone
    # only finds faces >= ~80 px there, the tiles find the rest.
    frame = np.full((720, 1280, 3), 80, np.uint8)
    for i, s in enumerate([0.3, 0.5, 0.7]):
        a = np.asarray(Image.fromarray(astronaut).resize((int(512 * s),) * 2))
        frame[100 : 100 + a.shape[0], 30 + i * 420 : 30 + i * 420 + a.shape[1]] = a
    (faces,) = model([frame])
    widths = sorted(round(f.box[2] - f.box[0]) for f in faces)
    assert len(widths) == 3 and widths[0] < 35 and widths[2] > 65, widths
    ref = _one_face(model([astronaut])[0]).embedding
    big = max(faces, key=lambda f: f.box[2] - f.box[0])
    assert face_distance(big.embedding, ref) < DISTANCE_THRESHOLD

    # min_size drops what is smaller, in input pixels
    (kept,) = FaceModel(FaceParams(min_size=40))([frame])
    assert len(kept) == 2 and all(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 40 for f in kept)


def test_small_real_faces_messi_and_basketball(model: FaceModel) -> None:
    messi, basket = _opencv_image("messi5.jpg"), _opencv_image("basketball1.png")
    m_faces, b_faces = model([messi, basket])
    # messi5.jpg (548x342): Messi's face, ~32 px, at (226, 97)
    m = _one_face(m_faces)
    assert m.box[0] == pytest.approx(226, abs=8) and m.box[1] == pytest.approx(97, abs=8)
    # basketball1.png (640x480): the player's face, ~33 px, at (73, 98)
    b = _one_face(b_faces)
    assert b.box[0] == pytest.approx(73, abs=8) and b.box[1] == pytest.approx(98, abs=8)
    # both ~32 px: a 40 px minimum drops them
    assert FaceModel(FaceParams(min_size=40))([messi, basket]) == [[], []]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "image 1 is empty"),
        (np.zeros((8, 8, 3), np.float32), "image 1 is float32"),
        (np.zeros((8, 8), np.uint8), r"image 1 is uint8 \(8, 8\)"),
        (np.zeros((8, 8, 4), np.uint8), "not an RGB uint8"),
        ("not an image", "image 1 is a str"),
    ],
)
def test_bad_images_raise_value_error(model: FaceModel, astronaut: np.ndarray, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model([astronaut, bad])  # type: ignore[list-item]


def test_hog_detector_finds_the_same_face(model: FaceModel, astronaut: np.ndarray, hopper: np.ndarray) -> None:
    hog = FaceModel(FaceParams(detector="hog"))
    assert model_files(hog.params) == model_files(FaceParams())[1:]
    a, h = hog([astronaut, hopper])
    assert len(a) == 1 and len(h) == 1
    assert face_distance(a[0].embedding, h[0].embedding) > DISTANCE_THRESHOLD
    # the same face as BlazeFace's box: HOG's box differs a little, the aligned embedding hardly
    blaze_a = _one_face(model([astronaut])[0])
    assert face_distance(a[0].embedding, blaze_a.embedding) < 0.2
    assert hog([np.zeros((240, 320, 3), np.uint8)]) == [[]]


def test_faces_table_round_trip(model: FaceModel, astronaut: np.ndarray, hopper: np.ndarray) -> None:
    empty = faces_table([])
    assert empty.num_rows == 0 and empty.schema == FACES_SCHEMA
    assert FACES_SCHEMA.names[:4] == ["kf", "t", "face", "box"]
    (faces,) = model([np.concatenate([astronaut[:, :400], hopper[:512, 50:]], axis=1)])  # two faces
    assert len(faces) == 2
    # rows as the pipeline writes them, without a face index: numbered within their keyframe
    rows = [{"kf": 3, "t": 1.5, **asdict(f)} for f in faces] + [{"kf": 4, "t": 2.0, **asdict(faces[0])}]
    buf = io.BytesIO()
    pq.write_table(faces_table(rows), buf)
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert table.schema == FACES_SCHEMA and table.num_rows == 3
    assert table.column("face").to_pylist() == [0, 1, 0]
    back = [face_from_row(r) for r in table.to_pylist()]
    for got, want in zip(back, [*faces, faces[0]], strict=True):
        assert got.thumbnail == want.thumbnail and len(got.landmarks) == 5
        assert face_distance(got.embedding, want.embedding) < 1e-5  # float32 round trip
        assert got.box == pytest.approx(want.box, abs=1e-3)
    with pytest.raises(ValueError):
        faces_table([{**rows[0], "embedding": (0.0,) * 127}])


def test_media_face_summary() -> None:
    f = Face(box=(0, 0, 1, 1), score=0.9, embedding=(0.0,) * 128, landmarks=(), thumbnail=b"")
    assert media_face_summary([[f], [], [f, f, f], [f]]) == {
        "keyframes": 4,
        "faces": 5,
        "max_faces": 3,
        "keyframes_with_faces": 3,
    }
    assert media_face_summary([]) == {"keyframes": 0, "faces": 0, "max_faces": 0, "keyframes_with_faces": 0}
