"""`keyframes`: each video decoded once into the frames every visual analysis reads."""

import time
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis.keyframes import (
    Keyframe,
    KeyframeParams,
    extract_video_keyframes,
    image_keyframe,
    keyframes_table,
)
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import (
    LONG_MEDIA_S,
    PER_MEDIA,
    Manifest,
    Manifests,
    for_each_partition,
    per_media_result,
    step_log,
)
from resources.store import MediaStore

SETTINGS = current_settings()
VERSION = SETTINGS.version("keyframes")
ASSET = "keyframes"


def keyframes_for(
    context: AssetExecutionContext, store: MediaStore, key: str, media: Manifest, params: KeyframeParams
) -> Manifest:
    """Pick and store one partition's keyframes; audio-only media get an empty index.

    The JPEGs are written into a scratch folder that replaces the partition's folder only once it
    is complete (a kill, a bad frame or a full disk leaves the previous folder as it was), and the
    index is written after it, so it never names a JPEG that is not there."""
    started = time.perf_counter()
    out_dir = store.artefact_dir(ASSET, VERSION, key)
    source = Path(media["path"])
    frames: list[Keyframe] = []
    log = step_log(context)
    with store.atomic_dir(out_dir, what=f"keyframe JPEGs of {key}") as work_dir:
        if media["kind"] == "video":
            frames = extract_video_keyframes(
                source,
                work_dir,
                params,
                declared_duration_s=media["duration_s"],
                progress=(
                    (lambda share: log.progress(f"{key}: decoded {share:.0%} of {media['duration_s']:.0f} s"))
                    if (media["duration_s"] or 0) >= LONG_MEDIA_S
                    else None
                ),
                final_dir=out_dir,
            )
        elif media["kind"] == "image":
            frames = image_keyframe(source, work_dir, params, final_dir=out_dir)
    table = store.write_table(ASSET, VERSION, key, keyframes_table(frames))
    store.prune_other_versions(ASSET, key, VERSION)
    seconds = time.perf_counter() - started
    return {
        "key": key,
        "version": VERSION,
        "kind": media["kind"],
        "source_name": media["source_name"],
        "table": str(table),
        "dir": str(out_dir),
        "count": len(frames),
        "shots": len({f.shot for f in frames}),
        "seconds": round(seconds, 2),
        "realtime_x": round((media["duration_s"] or 0) / seconds, 1) if seconds > 0 else None,
        "preview": [
            {"t": f.t, "shot": f.shot, "reason": f.reason, "sharpness": round(f.sharpness, 1)} for f in frames[:12]
        ],
    }


@asset(
    **PER_MEDIA,
    code_version=VERSION,
    group_name="ingest",
    kinds={"pyav", "parquet"},
    description="Keyframes of each video (first frame, every shot change, at least every max_gap_s) as "
    "JPEGs plus a Parquet index; an image is one keyframe; audio-only media have none.",
)
def keyframes(context: AssetExecutionContext, media_file: Manifests, store: MediaStore) -> MaterializeResult:
    params = KeyframeParams.from_params(SETTINGS.of(ASSET))
    names = {k: m["source_name"] for k, m in media_file.items()}
    manifests = for_each_partition(
        context, lambda key: keyframes_for(context, store, key, media_file[key], params), names
    )

    def detail(m: Manifest) -> dict[str, Any]:
        preview = "\n".join(
            ["| t (s) | shot | reason | sharpness |", "|---|---|---|---|"]
            + [f"| {r['t']:.2f} | {r['shot']} | {r['reason']} | {r['sharpness']} |" for r in m["preview"]]
        )
        metadata = {
            "dagster/row_count": m["count"],
            "shots": m["shots"],
            "seconds": m["seconds"],
            "realtime_x": m["realtime_x"] or 0.0,
            "table": MetadataValue.path(m["table"]),
            "preview": MetadataValue.md(preview),
        }
        return metadata

    return per_media_result(manifests, VERSION, detail, ["kind", "count", "shots", "seconds"])
