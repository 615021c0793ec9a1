"""`search_index`: every media's spoken words, screen text, tags and summary as vectors in Qdrant's `text`.

One collection for all sources, so one query ranks spoken moments against slides and tags; the
payload's `source` lets `medialens search --kind` narrow it. Re-materialising a partition replaces
its points (upsert, then delete the stale ones): search keeps finding the old version until the
new one is written, and never finds both.
"""

import time
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from media_assets.analysis import text_search, words
from media_assets.assets.model_assets import md_table, model_asset, model_version
from media_assets.plumbing.config import current_settings
from media_assets.plumbing.per_media import Manifest, Manifests, for_each_partition, per_media_result, step_log
from resources.models import ModelRunner
from resources.qdrant import PartitionWrites, QdrantResource, SparseVector, VectorPoint
from resources.store import MediaStore

ASSET = "search_index"
COLLECTION = "text"
SETTINGS = current_settings()
PARAMS = text_search.TextParams.from_params(SETTINGS.of(ASSET))
VERSION = model_version(SETTINGS, ASSET, text_search, PARAMS)


def _rows(store: MediaStore, manifest: Manifest | None, table_key: str) -> list[dict] | None:
    if not manifest or not manifest.get(table_key):
        return None
    return store.read_table(manifest[table_key]).to_pylist()


def _words(text: str) -> dict[str, SparseVector]:
    indices, values = words.document_words(text)
    return {words.WORDS_VECTOR: SparseVector(indices, values)} if indices else {}


def index_for(
    context: AssetExecutionContext,
    store: MediaStore,
    models: ModelRunner,
    text_points: PartitionWrites,
    key: str,
    inputs: dict[str, Manifest | None],
) -> Manifest:
    """Cut the analyses into moments, embed them, and make them the partition's only text points."""
    found = text_search.moments(
        _rows(store, inputs["transcript"], "table"),
        _rows(store, inputs["ocr_text"], "lines_table"),
        _rows(store, inputs["tags"], "media_table"),
        (inputs["summary"] or {}).get("summary"),
        params=PARAMS,
    )
    embed = models.load(text_search.TextEmbedder, PARAMS) if found else None
    started = time.perf_counter()
    vectors = list(embed([m.text for m in found])) if embed else []
    model_seconds = time.perf_counter() - started
    # what search filters by besides the moment itself: the media's kind and its spoken language
    media = store.read_manifest("media_file", key) or {}
    about = {"media_kind": media.get("kind"), "language": (inputs["transcript"] or {}).get("language")}
    points = [
        VectorPoint(item=m.point_item, vector=v, payload={**m.payload(), **about}, sparse=_words(m.text))
        for m, v in zip(found, vectors, strict=True)
    ]
    written = text_points.replace(key, ASSET, VERSION, points)
    by_source: dict[str, int] = {}
    for m in found:
        by_source[m.source] = by_source.get(m.source, 0) + 1
    sources = ", ".join(f"{s} {n}" for s, n in by_source.items()) or "none"
    step_log(context).info(f"{key}: {written} text points ({sources})")
    return {
        "key": key,
        "version": VERSION,
        "model": text_search.MODEL_ID,
        "points": written,
        "model_seconds": round(model_seconds, 2),
        "by_source": by_source,
        "preview": [[m.source, m.start, m.text[:80]] for m in found[:12]],
    }


@asset(
    **model_asset("search_index", group="search"),
    code_version=VERSION,
    kinds={"qdrant"},
    description=f"Text search index ({text_search.MODEL_ID}, multilingual, 512-d): transcript windows, "
    "OCR lines, tags and the summary of each media as vectors in Qdrant's `text` collection.",
)
def search_index(
    context: AssetExecutionContext,
    transcript: Manifests,
    ocr_text: Manifests,
    tags: Manifests,
    summary: Manifests,
    store: MediaStore,
    models: ModelRunner,
    qdrant: QdrantResource,
) -> MaterializeResult:
    def work(key: str) -> Manifest:
        inputs: dict[str, Manifest | None] = {
            "transcript": transcript.get(key),
            "ocr_text": ocr_text.get(key),
            "tags": tags.get(key),
            "summary": summary.get(key),
        }
        return index_for(context, store, models, text_points, key, inputs)

    with qdrant.partition_writes(COLLECTION, text_search.EMBEDDING_DIM, sparse=[words.WORDS_VECTOR]) as text_points:
        manifests = for_each_partition(context, work)

    def detail(m: Manifest) -> dict[str, Any]:
        metadata = {
            "dagster/row_count": m["points"],
            **{f"points_{s}": n for s, n in m["by_source"].items()},
            "model": text_search.MODEL_ID,
            "preview": MetadataValue.md(md_table(["source", "start s", "text"], m["preview"])),
        }
        return metadata

    return per_media_result(manifests, VERSION, detail, ["points"])
