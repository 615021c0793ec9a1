"""`tags`: ImageNet classes per keyframe and the media's tag histogram; with a CLIP model
configured, also zero-shot tags over the user's labels and keyframe vectors in Qdrant's `images`
collection (text-to-image search: `medialens search --kind image`)."""

from dataclasses import asdict
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import tags as tagging
from media_assets.assets.model_assets import KeyframeModel, md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.qdrant import PartitionWrites, QdrantResource, VectorPoint
from resources.store import MediaStore

ASSET = "tags"
SETTINGS = current_settings()
PARAMS = tagging.TagParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, tagging, PARAMS)
CLIP_MODEL = KeyframeModel(ASSET, VERSION, tagging.ClipKeyframes, PARAMS, "CLIP", batch_size=16, reuse_unchanged=True)
TAG_MODEL = KeyframeModel(ASSET, VERSION, tagging.TagModel, PARAMS, "tags", batch_size=16, reuse_unchanged=True)
IMAGES = "images"  # Qdrant collection of CLIP keyframe vectors


def clip_pass(
    context: AssetExecutionContext, models: ModelRunner, images: PartitionWrites, key: str, frames: Manifest
) -> tuple[list[dict], int]:
    """CLIP's zero-shot tag rows and the partition's image vectors (replacing the old ones); without
    CLIP configured any vectors of an earlier configuration are removed, so search never finds them."""
    if not PARAMS.clip_model:
        images.drop(key)
        return [], 0
    _, results, _stats = CLIP_MODEL.run(context, models, frames, key)
    rows, points = [], []
    for ref, found in results:
        for frame in found:
            rows += [{"kf": ref.kf, "t": ref.t, **asdict(tag)} for tag in frame.tags]
            points.append(VectorPoint(item=str(ref.kf), vector=list(frame.vector), payload={"kf": ref.kf, "t": ref.t}))
    if not points:  # audio, or no readable keyframe
        images.drop(key)
        return rows, 0
    return rows, images.replace(key, ASSET, VERSION, points)


def tags_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    images: PartitionWrites,
    key: str,
    frames: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Classify every keyframe in batches and count how often each class appears."""
    _, results, stats = TAG_MODEL.run(context, models, frames, key, cache)
    rows = [{"kf": ref.kf, "t": ref.t, **asdict(tag)} for ref, tags in results for tag in tags]
    clip_rows, vectors = clip_pass(context, models, images, key, frames)
    per_kf: dict[int, list] = {ref.kf: list(tags) for ref, tags in results}
    for r in clip_rows:  # CLIP's labels join the histogram beside the ImageNet classes
        per_kf.setdefault(r["kf"], []).append(tagging.Tag(r["label"], r["score"], r["class_id"], r["full_label"]))
    rows += clip_rows
    histogram = tagging.media_tags(list(per_kf.values()))
    table = store.write_table(ASSET, VERSION, key, tagging.tags_table(rows))
    media_table = store.write_table(ASSET, VERSION, f"{key}.media", tagging.media_tags_table(histogram))
    store.prune_other_versions(ASSET, key, VERSION)
    return {
        "key": key,
        "version": VERSION,
        "model": tagging.MODEL_ID,
        "table": str(table),
        "media_table": str(media_table),
        "tags": len(rows),
        "clip_tags": len(clip_rows),
        "image_vectors": vectors,
        **stats.as_metadata(),
        "top": [[t.label, round(t.score, 3), t.frames] for t in histogram],
    }


@asset(
    **model_asset("tags"),
    code_version=VERSION,
    kinds={"pytorch", "parquet"},
    description=f"Image tags ({tagging.MODEL_ID}): top-k ImageNet classes per keyframe and a media-level "
    "histogram (best score and number of keyframes per tag).",
)
def tags(
    context: AssetExecutionContext,
    keyframes: Manifests,
    store: MediaStore,
    models: ModelRunner,
    qdrant: QdrantResource,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    with qdrant.partition_writes(IMAGES) as images:  # CLIP's dimension: taken from its first vector
        manifests = for_each_partition(
            context,
            lambda key: tags_for(context, store, models, images, key, keyframes[key], inference_cache),
            names,
        )

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "dagster/row_count": m["tags"],
            **{
                k: m[k] for k in ("keyframes", "inferred_keyframes", "cache_hits", "skipped_keyframes", "model_seconds")
            },
            "model": tagging.MODEL_ID + (f" + CLIP {PARAMS.clip_model}" if PARAMS.clip_model else ""),
            "clip_tags": m["clip_tags"],
            "image_vectors": m["image_vectors"],
            "table": MetadataValue.path(m["table"]),
            "top_tags": MetadataValue.md(md_table(["tag", "best score", "keyframes"], m["top"])),
        }
        return metadata

    return per_media_result(manifests, VERSION, detail, ["tags", "keyframes", "cache_hits", "model_seconds"])
