"""Moment search over the `text` index: what `medialens search` prints and a results UI can import."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from media_assets.analysis import text_search, words
from resources.models import cached_model
from resources.qdrant import Between, QdrantResource, SparseVector
from resources.store import MediaStore

KINDS = ("transcript", "ocr", "tags", "summary", "image")


MEDIA_KINDS = ("video", "audio", "image")


@dataclass(frozen=True)
class Filters:
    """What a search is narrowed to; each is optional and they combine (AND). `media` and
    `person_media` are lists of media keys (a person's: where they were seen, see `media_of_person`);
    `time_from`/`time_to` keep timed moments that overlap that span of their media (untimed ones,
    tags and summaries, drop out); `language` is the media's spoken language (Whisper's code, "de")."""

    kind: str | None = None
    media: Sequence[str] = ()
    media_kind: str | None = None
    language: str | None = None
    person_media: Sequence[str] | None = None
    time_from: float | None = None
    time_to: float | None = None

    def check(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"search: unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.media_kind is not None and self.media_kind not in MEDIA_KINDS:
            raise ValueError(f"search: unknown media kind {self.media_kind!r}; one of {', '.join(MEDIA_KINDS)}")
        if self.time_from is not None and self.time_to is not None and self.time_from > self.time_to:
            raise ValueError(f"search: --from {self.time_from:g} is after --to {self.time_to:g}")

    def media_keys(self) -> set[str] | None:
        """The media the search may return (None: any); empty when `media` and the person's exclude each other."""
        keys = set(self.media) if self.media else None
        if self.person_media is not None:
            keys = set(self.person_media) if keys is None else keys & set(self.person_media)
        return keys

    def must(self) -> dict[str, Any]:
        """The payload conditions of the `text` collection."""
        must: dict[str, Any] = {}
        if self.kind:
            must["source"] = self.kind
        keys = self.media_keys()
        if keys is not None:
            must["partition"] = sorted(keys)
        if self.media_kind:
            must["media_kind"] = self.media_kind
        if self.language:
            must["language"] = self.language.lower()
        if self.time_to is not None:
            must["start"] = Between(lte=self.time_to)
        if self.time_from is not None:
            must["end"] = Between(gte=self.time_from)
        return must


def search(
    qdrant: QdrantResource,
    query: str,
    kind: str | None = None,
    media: str | None = None,
    limit: int = 10,
    device: str = "cpu",
    filters: Filters | None = None,
) -> list[dict[str, Any]]:
    """Ranked moments `{key, source, start, end, text, score}`, best first, one per overlapping spot;
    a transcript hit spans the sentence that matched best inside its window (the window's text).
    The ranking fuses meaning (dense vectors) and words (BM25), see `analysis/words.py`; `score` is
    the fused reciprocal-rank score (higher is better, comparable within one search only)."""
    f = filters or Filters()
    f = replace(f, kind=kind or f.kind, media=[media] if media else f.media)
    return search_moments(qdrant, query, f, limit, device)["hits"]


def search_moments(
    qdrant: QdrantResource, query: str, filters: Filters | None = None, limit: int = 10, device: str = "cpu"
) -> dict[str, Any]:
    """`{"hits": [...], "counts": {source: n}}`: the hits of `search`, and per source kind how many
    distinct moments among the best 3 x `limit` of the fused ranking (after the filters) — the facet
    counts a results page shows beside the hits."""
    from media_assets.assets.search_index import COLLECTION, PARAMS

    f = filters or Filters()
    if not query.strip():
        raise ValueError("search: the query is empty")
    f.check()
    if f.kind == "image":
        found = image_search(qdrant, query, f.media[0] if f.media else None, limit, device)
        return {"hits": found, "counts": {"image": len(found)}}
    if f.media_keys() == set():
        return {"hits": [], "counts": {}}
    embedder = cached_model(text_search.TextEmbedder, PARAMS, device)
    (vector,) = embedder([query])
    must = f.must() or None
    # overlapping transcript windows collapse in dedupe_hits: ask for more, keep `limit`
    dense = qdrant.search(COLLECTION, vector, limit=limit * 3, must=must)
    terms, weights = words.query_words(query)
    lexical = qdrant.search_sparse(COLLECTION, words.WORDS_VECTOR, SparseVector(terms, weights), limit * 3, must)
    payloads = {h.id: h.payload for h in [*lexical, *dense]}
    # a transcript hit's time: the sentence of its window nearest the query, not the window's start
    ids = list(payloads)
    within = (f.time_from, f.time_to)
    refined = dict(
        zip(ids, text_search.refine([(payloads[i], 0.0) for i in ids], vector, embedder, within), strict=True)
    )
    ranked = words.fuse(
        [(h.id, words.dense_score(h.score, refined[h.id][1], str(h.payload.get("text", "")))) for h in dense],
        [(h.id, words.coverage(terms, str(h.payload.get("text", "")))) for h in lexical],
    )
    found = text_search.dedupe_hits({**refined[pid][0], "score": score} for pid, score in ranked)
    counts: dict[str, int] = {}
    for hit in found:
        counts[hit["source"]] = counts.get(hit["source"], 0) + 1
    return {"hits": found[:limit], "counts": counts}


def media_of_person(store: MediaStore, person_id: str) -> list[str]:
    """The media keys a person was seen in, from the latest person dossiers (names and merges
    applied); ValueError naming the id when there is no such person."""
    from media_assets.assets.person_dossiers import ASSET

    manifest = store.read_manifest(ASSET, "library")
    if manifest is None:
        raise ValueError(f"search: no person {person_id!r}: no person dossiers yet (run `medialens people`)")
    rows = store.read_table(manifest["tables"]["persons"]).to_pylist()
    person = next((r for r in rows if r["person_id"] == person_id), None)
    if person is None:
        raise ValueError(f"search: no person {person_id!r} (list them with `medialens people`)")
    return list(person["media"])


def image_search(
    qdrant: QdrantResource, query: str, media: str | None = None, limit: int = 10, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Keyframes whose CLIP vector is nearest the query's (needs `tags: {clip_model: ...}`)."""
    from media_assets.analysis.tags import ClipKeyframes
    from media_assets.assets.tags import IMAGES
    from media_assets.assets.tags import PARAMS as TAG_PARAMS

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
