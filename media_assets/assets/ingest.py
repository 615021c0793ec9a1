"""`media_file`: take a registered file into the content-addressed store, verified and probed."""

from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis.inspect import Limits, MediaRejected, inspect_media, sha256_of
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import PER_MEDIA, Manifest, for_each_partition, per_media_result
from resources.store import MediaStore

SETTINGS = current_settings()
VERSION = SETTINGS.version("media_file")


def ingest_partition(store: MediaStore, key: str, limits: Limits) -> Manifest:
    """Store the partition's bytes at their content address and describe them."""
    source = store.read_source(key)
    sha = source["sha256"]
    stored = store.media_path(sha, source["suffix"])
    incoming = Path(source["path"])
    if not stored.exists():
        if not incoming.exists():
            raise MediaRejected(incoming, "source file is gone and the store has no copy of it")
        # The bytes must be those that were admitted: a file rewritten since is a new upload.
        if sha256_of(incoming) != sha:
            raise MediaRejected(incoming, "file changed after it was registered; drop it again")
        inspect_media(incoming, limits)
        # A copy that would not fit is refused before it starts (StoreFull, naming the file and the
        # bytes): filling the disk would fail every other partition's writes too.
        stored = store.add_original(
            incoming, sha, source["suffix"], move=bool(source.get("move")), what=f"original of {source['source_name']}"
        )
    elif source.get("move") and incoming.exists() and incoming != stored:
        incoming.unlink()  # the upload sensor's copy is redundant now
    try:
        info = inspect_media(stored, limits)
    except MediaRejected as exc:
        raise exc.naming(source["source_name"]) from exc
    return {
        "key": key,
        "version": VERSION,
        "source_name": source["source_name"],
        "source_path": source["path"],
        "sha256": sha,
        "path": str(stored),
        **info.as_dict(),
    }


@asset(
    **PER_MEDIA,
    code_version=VERSION,
    group_name="ingest",
    kinds={"pyav"},
    description="The original file, verified against its hash, probed (streams, codecs, duration) and "
    "kept in the content-addressed media store. Bad input fails here with the file and the reason.",
)
def media_file(context: AssetExecutionContext, store: MediaStore) -> MaterializeResult:
    limits = Limits.from_params(SETTINGS.of("media_file"))
    manifests = for_each_partition(context, lambda key: ingest_partition(store, key, limits))

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "source_name": m["source_name"],
            "kind": m["kind"],
            "container": m["container"],
            "duration_s": m["duration_s"] or 0.0,
            "size_mb": round(m["size_bytes"] / 2**20, 2),
            "resolution": f"{m['width']}x{m['height']}" if m["width"] else "-",
            "fps": m["fps"] or 0.0,
            "video_codec": m["video_codec"] or "-",
            "audio_codec": m["audio_codec"] or "-",
            "sha256": m["sha256"],
            "path": MetadataValue.path(m["path"]),
            "streams": MetadataValue.json(m["streams"]),
        }
        return metadata

    return per_media_result(manifests, VERSION, detail, ["kind", "duration_s", "container", "size_bytes"])
