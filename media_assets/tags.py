"""`tags`: ImageNet classes per keyframe and the media's tag histogram."""

from dataclasses import asdict

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import tags as tagging
from media_assets.config import current_settings
from media_assets.model_assets import MODEL_ASSET, infer_on_keyframes, md_table, model_version
from media_assets.per_media import Manifest, Manifests, for_each_partition, summary_metadata
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "tags"
SETTINGS = current_settings()
PARAMS = tagging.TagParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, tagging, PARAMS)


def tags_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    frames: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Classify every keyframe in batches and count how often each class appears."""
    _, results, stats = infer_on_keyframes(
        context,
        models,
        tagging.TagModel,
        PARAMS,
        frames,
        key,
        "tags",
        batch_size=16,
        cache=cache,
        asset=ASSET,
        version=VERSION,
    )
    rows = [{"kf": ref.kf, "t": ref.t, **asdict(tag)} for ref, tags in results for tag in tags]
    histogram = tagging.media_tags([tags for _, tags in results])
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
        **stats.as_metadata(),
        "top": [[t.label, round(t.score, 3), t.frames] for t in histogram],
    }


@asset(
    **MODEL_ASSET,
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
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    manifests = for_each_partition(
        context, lambda key: tags_for(context, store, models, key, keyframes[key], inference_cache), names
    )
    if len(manifests) == 1:
        m = next(iter(manifests.values()))
        metadata = {
            "dagster/row_count": m["tags"],
            **{
                k: m[k] for k in ("keyframes", "inferred_keyframes", "cache_hits", "skipped_keyframes", "model_seconds")
            },
            "model": tagging.MODEL_ID,
            "table": MetadataValue.path(m["table"]),
            "top_tags": MetadataValue.md(md_table(["tag", "best score", "keyframes"], m["top"])),
        }
    else:
        metadata = summary_metadata(manifests, ["tags", "keyframes", "cache_hits", "model_seconds"])
    return MaterializeResult(value=manifests, metadata={"version": VERSION, **metadata})
