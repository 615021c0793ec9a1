"""`ocr_text`: text on screen per keyframe, and the media's deduplicated lines with first/last seen."""

from dataclasses import asdict
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import ocr
from media_assets.assets.model_assets import KeyframeModel, md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.store import MediaStore

ASSET = "ocr_text"
SETTINGS = current_settings()
PARAMS = ocr.OcrParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, ocr, PARAMS)
OCR_MODEL = KeyframeModel(ASSET, VERSION, ocr.OcrModel, PARAMS, "OCR", batch_size=4, reuse_unchanged=True)


def ocr_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    key: str,
    frames: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Read every keyframe (a held slide is read once) and merge repeated lines."""
    _, results, stats = OCR_MODEL.run(context, models, frames, key, cache)
    rows = [{"kf": ref.kf, "t": ref.t, **asdict(line)} for ref, lines in results for line in lines]
    lines = ocr.dedupe_lines([(ref.t, recs) for ref, recs in results])
    table = store.write_table(ASSET, VERSION, key, ocr.ocr_table(rows))
    lines_table = store.write_table(ASSET, VERSION, f"{key}.lines", ocr.media_lines_table(lines))
    store.prune_other_versions(ASSET, key, VERSION)
    return {
        "key": key,
        "version": VERSION,
        "model": ocr.MODEL_ID,
        "table": str(table),
        "lines_table": str(lines_table),
        "lines": len(lines),
        "detections": len(rows),
        **stats.as_metadata(),
        "preview": [[round(m.first_t, 1), round(m.last_t, 1), m.text[:80]] for m in lines[:15]],
    }


@asset(
    **model_asset("ocr_text"),
    code_version=VERSION,
    kinds={"onnx", "parquet"},
    description=f"Text on screen ({ocr.MODEL_ID}, multilingual): lines with box and confidence per keyframe, "
    "and the media's deduplicated lines (the same slide text over many keyframes is one line).",
)
def ocr_text(
    context: AssetExecutionContext,
    keyframes: Manifests,
    store: MediaStore,
    models: ModelRunner,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    manifests = for_each_partition(
        context, lambda key: ocr_for(context, store, models, key, keyframes[key], inference_cache), names
    )

    def detail(m: Manifest) -> dict[str, Any]:
        return {
            "dagster/row_count": m["detections"],
            "lines": m["lines"],
            **{
                k: m[k]
                for k in ("keyframes", "inferred_keyframes", "reused_keyframes", "cache_hits", "skipped_keyframes")
            },
            "model_seconds": m["model_seconds"],
            "model": ocr.MODEL_ID,
            "table": MetadataValue.path(m["table"]),
            "preview": MetadataValue.md(md_table(["first s", "last s", "text"], m["preview"])),
        }

    columns = ["lines", "keyframes", "reused_keyframes", "cache_hits", "model_seconds"]
    return per_media_result(manifests, VERSION, detail, columns)
