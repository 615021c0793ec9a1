"""`faces`: every face per keyframe with a 128-d identity embedding, in Qdrant's `faces` collection.

Person dossiers cluster these embeddings across the library; nothing here names anyone.
"""

from dataclasses import asdict
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import faces as facing
from media_assets.analysis.people import embedding_digest
from media_assets.assets.model_assets import KeyframeModel, md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.people_log import forgotten_faces
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result
from resources.inference_cache import InferenceCache
from resources.models import ModelRunner
from resources.qdrant import PartitionWrites, QdrantResource, VectorPoint
from resources.store import MediaStore

ASSET = "faces"
COLLECTION = "faces"
EMBEDDING_DIM = 128
SETTINGS = current_settings()
PARAMS = facing.FaceParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, facing, PARAMS)
FACE_MODEL = KeyframeModel(ASSET, VERSION, facing.FaceModel, PARAMS, "faces", batch_size=4, reuse_unchanged=True)


def face_id(key: str, kf: int, face: int) -> str:
    """A face's stable name: its media, keyframe and index (the dossiers and `show` use it)."""
    return f"{key}/{kf}/{face}"


def faces_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    vectors: PartitionWrites,
    key: str,
    frames: Manifest,
    cache: InferenceCache | None = None,
) -> Manifest:
    """Find and embed the faces of every keyframe; make them the partition's only face vectors."""
    _, results, stats = FACE_MODEL.run(context, models, frames, key, cache)
    rows = [
        {"kf": ref.kf, "t": ref.t, "face": i, **asdict(face)} for ref, found in results for i, face in enumerate(found)
    ]
    # faces of a person the user asked to forget stay forgotten when the media is analysed again
    gone_ids, gone_digests = forgotten_faces(store)
    kept = [
        r
        for r in rows
        if face_id(key, r["kf"], r["face"]) not in gone_ids and embedding_digest(r["embedding"]) not in gone_digests
    ]
    if len(kept) < len(rows):
        context.log.info(f"{key}: {len(rows) - len(kept)} forgotten face(s) left out")
    rows = kept
    table = store.write_table(ASSET, VERSION, key, facing.faces_table(rows))
    points = [
        VectorPoint(
            item=f"{r['kf']}-{r['face']}",
            vector=r["embedding"],
            payload={
                "face_id": face_id(key, r["kf"], r["face"]),
                "kf": r["kf"],
                "t": r["t"],
                "box": list(r["box"]),
                "score": r["score"],
            },
        )
        for r in rows
    ]
    written = vectors.replace(key, ASSET, VERSION, points)
    store.prune_other_versions(ASSET, key, VERSION)
    summary = facing.media_face_summary([found for _, found in results])
    return {
        "key": key,
        "version": VERSION,
        "model": facing.MODEL_ID,
        "table": str(table),
        "faces": len(rows),
        "vectors": written,
        "max_faces": summary["max_faces"],
        "keyframes_with_faces": summary["keyframes_with_faces"],
        **stats.as_metadata(),
        "preview": [[round(r["t"], 1), [round(v) for v in r["box"]], round(r["score"], 2)] for r in rows[:15]],
    }


@asset(
    **model_asset("faces"),
    code_version=VERSION,
    kinds={"tflite", "dlib", "qdrant", "parquet"},
    description=f"Faces ({facing.MODEL_ID}): box, score, 5 landmarks, a 128-d identity embedding and an "
    "aligned thumbnail per face per keyframe; embeddings in Qdrant's `faces` collection.",
)
def faces(
    context: AssetExecutionContext,
    keyframes: Manifests,
    store: MediaStore,
    models: ModelRunner,
    qdrant: QdrantResource,
    inference_cache: InferenceCache,
) -> MaterializeResult:
    names = {k: m.get("source_name", k) for k, m in keyframes.items()}
    with qdrant.partition_writes(COLLECTION, EMBEDDING_DIM, distance="Euclid") as vectors:
        manifests = for_each_partition(
            context,
            lambda key: faces_for(context, store, models, vectors, key, keyframes[key], inference_cache),
            names,
        )

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "dagster/row_count": m["faces"],
            **{
                k: m[k]
                for k in (
                    "vectors",
                    "max_faces",
                    "keyframes_with_faces",
                    "keyframes",
                    "inferred_keyframes",
                    "cache_hits",
                    "skipped_keyframes",
                )
            },
            "model_seconds": m["model_seconds"],
            "model": facing.MODEL_ID,
            "table": MetadataValue.path(m["table"]),
            "preview": MetadataValue.md(md_table(["t s", "box", "score"], m["preview"])),
        }
        return metadata

    return per_media_result(
        manifests, VERSION, detail, ["faces", "vectors", "keyframes", "cache_hits", "model_seconds"]
    )
