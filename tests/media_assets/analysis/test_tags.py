"""Tags: the real EfficientNet-Lite0 on real photos, and CLIP loading on a tiny random checkpoint."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from media_assets.analysis.tags import (
    MODEL_ID,
    ClipModel,
    MediaTag,
    Tag,
    TagModel,
    TagParams,
    media_tags,
    media_tags_table,
    model_files,
    tags_table,
)

CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian, cougar, lynx
CUP_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def model() -> TagModel:
    return TagModel(TagParams())


def ids(tags: list[Tag]) -> set[int]:
    return {t.class_id for t in tags}


def test_params_and_files() -> None:
    assert TagParams.from_params({"top_k": 3, "unrelated": 1}) == TagParams(top_k=3)
    (f,) = model_files(TagParams())
    assert f.is_file() and f.suffix == ".pth"
    assert MODEL_ID


def test_real_photos(model: TagModel) -> None:
    cat, coffee, astro = model([data.chelsea(), data.coffee(), data.astronaut()])
    assert ids(cat) & CAT_CLASSES, cat
    assert cat[0].class_id in CAT_CLASSES and sum(t.score for t in cat if t.class_id in CAT_CLASSES) > 0.8
    assert coffee[0].class_id == 967 and coffee[0].score > 0.8, coffee  # espresso
    assert coffee[0].label == "espresso"
    # astronaut (Eileen Collins in a suit, flag, helmet): ImageNet has no "astronaut"; the model
    # says football helmet / bobsled / go-kart / crash helmet, i.e. helmeted-person classes.
    helmets = {560, 518, 450, 573}  # football helmet, crash helmet, bobsled, go-kart
    assert ids(astro) & helmets, astro
    for tags in (cat, coffee, astro):
        assert [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
        assert all(t.score >= 0.05 for t in tags) and len(tags) <= 5


def test_labels_short_and_full(model: TagModel) -> None:
    assert model.labels[281] == "tabby" and model.full_labels[281] == "tabby, tabby cat"


def test_batch_equals_singles(model: TagModel) -> None:
    imgs = [data.chelsea(), data.coffee(), data.astronaut()]
    batch = model.probabilities(imgs)
    singles = np.concatenate([model.probabilities([im]) for im in imgs])
    assert batch.shape == (3, 1000)
    np.testing.assert_allclose(batch, singles, atol=1e-4)


def test_bad_images_do_not_break_batch(model: TagModel, caplog: pytest.LogCaptureFixture) -> None:
    imgs = [
        np.zeros((0, 10, 3), np.uint8),
        data.chelsea(),
        data.camera(),  # grayscale 2-D: not the promised RGB
        data.chelsea().astype(np.float32),
    ]
    with caplog.at_level(logging.WARNING, logger="media_assets.analysis.tags"):
        out = model(imgs)
    assert out[0] == [] and out[2] == [] and out[3] == []
    assert ids(out[1]) & CAT_CLASSES
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 3
    assert model([]) == []


def test_tiny_and_odd_shapes(model: TagModel) -> None:
    out = model([np.full((1, 1, 3), 128, np.uint8), np.full((7, 1900, 3), 200, np.uint8)])
    assert len(out) == 2  # no crash on degenerate crops; tags may well be empty


def test_speed_batch8(model: TagModel) -> None:
    imgs = [data.chelsea()] * 8
    model(imgs)
    t0 = time.perf_counter()
    model(imgs)
    ms = (time.perf_counter() - t0) / 8 * 1000
    print(f"efficientnet-lite0 batch 8: {ms:.1f} ms/frame")
    assert ms < 2000


def test_tags_table_roundtrip() -> None:
    assert tags_table([]).num_rows == 0
    tag = Tag("tabby", 0.5, 281, "tabby, tabby cat")
    table = tags_table(
        [{"kf": 3, "t": 1.5, **asdict(tag)}, {"kf": 4, "t": 2.0, "label": "x", "score": 0.1, "class_id": 1}]
    )
    assert table.column_names == ["kf", "t", "label", "score", "class_id", "full_label"]
    assert table.column("full_label").to_pylist() == ["tabby, tabby cat", "x"]
    assert media_tags_table([]).num_rows == 0


def test_media_tags_histogram() -> None:
    cat, cup, dog = Tag("tabby", 0.6, 281, "tabby, tabby cat"), Tag("cup", 0.9, 968, "cup"), Tag("dog", 0.3, 1)
    frames = [
        [cat, cup],
        [Tag("tabby", 0.8, 281, "tabby, tabby cat"), dog],
        [Tag("tabby", 0.2, 281, "tabby, tabby cat")],
        [],
        [Tag("dog", 0.7, 1)],
    ]
    agg = media_tags(frames)
    assert agg == [
        MediaTag("tabby", 0.8, 3, 281, "tabby, tabby cat"),
        MediaTag("dog", 0.7, 2, 1, "dog"),
        MediaTag("cup", 0.9, 1, 968, "cup"),
    ]
    assert media_tags(frames, top_n=1) == agg[:1]
    assert media_tags([]) == []
    assert media_tags_table(agg).column("frames").to_pylist() == [3, 2, 1]


# --- CLIP: a tiny random checkpoint exercises the real loading and embedding code -------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    # Byte-level vocab with no merges: every word tokenises to its bytes, enough for real prompts.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        # token ids of this vocab, so the text tower pools at the real end-of-text token
        text_config={**common, "vocab_size": len(vocab), "max_position_embeddings": 64}
        | {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**common, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(config).save_pretrained(path)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def test_clip_tiny(tiny_clip: Path) -> None:
    labels = ["cat", "coffee", "astronaut", "dog"]
    clip = ClipModel(str(tiny_clip), labels, params=TagParams(top_k=2, min_score=0.0))
    imgs = [data.chelsea(), data.coffee(), data.astronaut()]
    emb = clip.image_embeddings(imgs)
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    txt = clip.text_embeddings(["a cat", "a photo of a cup of coffee"])
    assert txt.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    out = clip([*imgs, np.zeros((0, 0, 3), np.uint8)])
    assert [len(t) for t in out] == [2, 2, 2, 0]
    for tags in out[:3]:
        assert all(t.label in labels and labels[t.class_id] == t.label for t in tags)
        assert 0.0 <= tags[1].score <= tags[0].score <= 1.0
    assert [p.suffix for p in clip.model_files()] == [".safetensors"]


def test_clip_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_clip"
    with pytest.raises(FileNotFoundError, match="no_such_clip"):
        ClipModel(str(missing), ["cat"])
