"""`safety`: NudeNet labels per keyframe and a media verdict; pose-based restraint cues for review.

A restraint cue (wrists held together or behind the back over consecutive keyframes) is a hint
for a human reviewer: it can raise the verdict to "review", never to "unsafe".
"""

from collections import defaultdict
from dataclasses import asdict
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import poses as posing
from media_assets.analysis import safety as moderation
from media_assets.assets.model_assets import KeyframeModel, md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "safety"
SETTINGS = current_settings()
PARAMS = moderation.SafetyParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, moderation, PARAMS)
SAFETY_MODEL = KeyframeModel(
    ASSET, VERSION, moderation.SafetyModel, PARAMS, "safety", batch_size=moderation.MAX_BATCH, reuse_unchanged=True
)


def poses_by_keyframe(poses_manifest: Manifest) -> dict[int, list[posing.Pose]]:
    """The `poses` asset's people per keyframe index (none for media without keyframes)."""
    out: dict[int, list[posing.Pose]] = defaultdict(list)
    if poses_manifest.get("table"):
        for row in MediaStore.read_table(poses_manifest["table"]).to_pylist():
            out[row["kf"]].append(posing.pose_from_row(row))
    return out


def safety_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    frames: Manifest,
    poses_manifest: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Label every keyframe, find restraint cues in the poses, and weigh both into one verdict."""
    refs, results, stats = SAFETY_MODEL.run(context, models, frames, key, cache)
    rows = [{"kf": ref.kf, "t": ref.t, **asdict(label)} for ref, labels in results for label in labels]
    people = poses_by_keyframe(poses_manifest)
    cues = moderation.restraint_cues([(ref.t, people.get(ref.kf, [])) for ref in refs], PARAMS)
    outcome = moderation.verdict([(ref.t, labels) for ref, labels in results], cues, PARAMS)
    table = store.write_table(ASSET, VERSION, key, moderation.safety_table(rows))
    store.prune_other_versions(ASSET, key, VERSION)
    if outcome.level != "safe":
        context.log.warning(f"{key}: safety verdict {outcome.level}: {'; '.join(outcome.reasons)}")
    return {
        "key": key,
        "version": VERSION,
        "model": moderation.MODEL_ID,
        "table": str(table),
        "labels": len(rows),
        "verdict": outcome.level,
        "reasons": list(outcome.reasons),
        "unsafe_keyframes": outcome.unsafe_keyframes,
        "review_keyframes": outcome.review_keyframes,
        "restraint_cues": [asdict(c) for c in cues],
        **stats.as_metadata(),
    }


def _label_counts(rows: list[dict[str, Any]]) -> list[list[Any]]:
    counts: dict[str, tuple[int, float]] = {}
    for r in rows:
        n, best = counts.get(r["label"], (0, 0.0))
        counts[r["label"]] = (n + 1, max(best, r["score"]))
    return [[label, n, round(best, 2)] for label, (n, best) in sorted(counts.items(), key=lambda kv: -kv[1][0])]


@asset(
    **model_asset("safety"),
    code_version=VERSION,
    kinds={"onnx", "parquet"},
    description=f"Content safety ({moderation.MODEL_ID}): labels per keyframe and a verdict "
    "(safe / review / unsafe, with reasons); restraint cues from poses are flagged for review only.",
)
def safety(
    context: AssetExecutionContext,
    keyframes: Manifests,
    poses: Manifests,
    store: MediaStore,
    models: ModelRunner,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    manifests = for_each_partition(
        context, lambda key: safety_for(context, store, models, key, keyframes[key], poses[key], inference_cache), names
    )

    def detail(m: Manifest) -> dict[str, Any]:
        labels = MediaStore.read_table(m["table"]).to_pylist()
        metadata = {
            "dagster/row_count": m["labels"],
            "verdict": m["verdict"],
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in m["reasons"]) or "none"),
            "restraint_cues": len(m["restraint_cues"]),
            **{
                k: m[k] for k in ("keyframes", "inferred_keyframes", "cache_hits", "skipped_keyframes", "model_seconds")
            },
            "model": moderation.MODEL_ID,
            "table": MetadataValue.path(m["table"]),
            "labels_seen": MetadataValue.md(md_table(["label", "keyframes", "best score"], _label_counts(labels))),
        }
        return metadata

    return per_media_result(manifests, VERSION, detail, ["verdict", "labels", "keyframes", "model_seconds"])
