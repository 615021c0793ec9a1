"""`poses`: every person's 33 BlazePose keypoints per keyframe (safety reads them for restraint cues)."""

from dataclasses import asdict
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import poses as posing
from media_assets.assets.model_assets import KeyframeModel, md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "poses"
SETTINGS = current_settings()
PARAMS = posing.PoseParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, posing, PARAMS)
POSE_MODEL = KeyframeModel(ASSET, VERSION, posing.PoseModel, PARAMS, "poses", batch_size=8, reuse_unchanged=True)


def poses_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    frames: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Find the people in every keyframe and give each a landmark pass."""
    _, results, stats = POSE_MODEL.run(context, models, frames, key, cache)
    rows = [
        {"kf": ref.kf, "t": ref.t, "person": i, **asdict(pose)}
        for ref, found in results
        for i, pose in enumerate(found)
    ]
    table = store.write_table(ASSET, VERSION, key, posing.poses_table(rows))
    store.prune_other_versions(ASSET, key, VERSION)
    summary = posing.person_count_summary([found for _, found in results])
    return {
        "key": key,
        "version": VERSION,
        "model": posing.MODEL_ID,
        "table": str(table),
        "poses": len(rows),
        "max_people": summary["max_people"],
        "keyframes_with_people": summary["keyframes_with_people"],
        "mean_visibility": summary["mean_visibility"],
        **stats.as_metadata(),
        "preview": [
            [round(ref.t, 1), len(found), round(max((p.score for p in found), default=0.0), 2)]
            for ref, found in results[:15]
        ],
    }


@asset(
    **model_asset("poses"),
    code_version=VERSION,
    kinds={"tflite", "parquet"},
    description=f"Body poses ({posing.MODEL_ID}, multi-person): 33 keypoints with visibility per person "
    "per keyframe, in keyframe pixels.",
)
def poses(
    context: AssetExecutionContext,
    keyframes: Manifests,
    store: MediaStore,
    models: ModelRunner,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    manifests = for_each_partition(
        context, lambda key: poses_for(context, store, models, key, keyframes[key], inference_cache), names
    )

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "dagster/row_count": m["poses"],
            **{
                k: m[k]
                for k in (
                    "max_people",
                    "keyframes_with_people",
                    "keyframes",
                    "inferred_keyframes",
                    "cache_hits",
                    "skipped_keyframes",
                )
            },
            "mean_visibility": m["mean_visibility"] if m["mean_visibility"] is not None else 0.0,
            "model_seconds": m["model_seconds"],
            "model": posing.MODEL_ID,
            "table": MetadataValue.path(m["table"]),
            "preview": MetadataValue.md(md_table(["t s", "people", "best score"], m["preview"])),
        }
        return metadata

    return per_media_result(
        manifests, VERSION, detail, ["poses", "max_people", "keyframes", "cache_hits", "model_seconds"]
    )
