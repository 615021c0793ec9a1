"""Moment search over the `text` index: what `medialens search` prints and a results UI can import."""

from __future__ import annotations

from typing import Any

from media_assets.analysis import text_search
from resources.models import cached_model
from resources.qdrant import QdrantResource

KINDS = ("transcript", "ocr", "tags", "summary", "image")


def search(
    qdrant: QdrantResource,
    query: str,
    kind: str | None = None,
    media: str | None = None,
    limit: int = 10,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Ranked moments `{key, source, start, end, text, score}`, best first, one per overlapping spot;
    a transcript hit spans the sentence that matched best inside its window (the window's text)."""
    from media_assets.search_index import COLLECTION, PARAMS

    if not query.strip():
        raise ValueError("search: the query is empty")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"search: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "image":
        return image_search(qdrant, query, media, limit, device)
    embedder = cached_model(text_search.TextEmbedder, PARAMS, device)
    (vector,) = embedder([query])
    must: dict[str, Any] = {}
    if kind:
        must["source"] = kind
    if media:
        must["partition"] = media
    # overlapping transcript windows collapse in dedupe_hits: ask for more, keep `limit`
    hits = qdrant.search(COLLECTION, vector, limit=limit * 3, must=must or None)
    # a transcript hit's time: the sentence of its window nearest the query, not the window's start
    found = text_search.refine_hits(((h.payload, h.score) for h in hits), vector, embedder)
    return text_search.dedupe_hits(found, limit=limit)


def image_search(
    qdrant: QdrantResource, query: str, media: str | None = None, limit: int = 10, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Keyframes whose CLIP vector is nearest the query's (needs `tags: {clip_model: ...}`)."""
    from media_assets.analysis.tags import ClipKeyframes
    from media_assets.tags import IMAGES
    from media_assets.tags import PARAMS as TAG_PARAMS

    if not TAG_PARAMS.clip_model:
        raise ValueError("search --kind image needs a CLIP model: set tags: {clip_model: PATH} and re-analyse")
    vector = cached_model(ClipKeyframes, TAG_PARAMS, device).text_vector(query)
    hits = qdrant.search(IMAGES, vector.tolist(), limit=limit, must={"partition": media} if media else None)
    return [
        {
            "key": h.payload["partition"],
            "source": "image",
            "start": h.payload.get("t"),
            "end": h.payload.get("t"),
            "text": f"keyframe {h.payload.get('kf')}",
            "score": float(h.score),
        }
        for h in hits
    ]
