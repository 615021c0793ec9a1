"""Hybrid ranking through the real index: the fixture library of test_text_search written as
`search_index` writes it (dense vectors and BM25 words) into embedded Qdrant, searched by
`media_assets.service.search.search`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from media_assets.analysis import words
from media_assets.analysis.text_search import TextEmbedder, TextParams, moments
from media_assets.assets.search_index import _words
from media_assets.service.search import Filters, search, search_moments
from resources.qdrant import QdrantResource, VectorPoint
from tests.media_assets.analysis.test_text_search import MEDIA, segments

AUDIOBOOK = segments(
    [
        "Chapter one.",
        "The old merchant lived alone in a narrow house by the canal.",
        "His neighbours said he was cold-hearted and rather selfish.",
        "He counted his coins every evening by the light of one candle.",
    ]
)
ABOUT = {  # what search_index adds to every point of a media: its kind and spoken language
    "harbour-talk-0a1b2c3d4e": ("video", "en"),
    "risotto-5f6a7b8c9d": ("video", "de"),
    "derby-e1f2a3b4c5": ("video", "en"),
    "audiobook-9a8b7c6d5e": ("audio", "en"),
    "poster-1f2e3d4c5b": ("image", None),
}
LIBRARY: dict[str, dict[str, Any]] = {
    **MEDIA,
    "audiobook-9a8b7c6d5e": {"transcript": AUDIOBOOK, "ocr": [], "tags": [], "summary": None},
    # a poster with one short word: the kind of OCR line that attracted unrelated queries
    "poster-1f2e3d4c5b": {"transcript": [], "ocr": [{"text": "unicef", "first_t": 0.0, "last_t": 0.0}], "tags": []},
}


@pytest.fixture(scope="module")
def qdrant(tmp_path_factory: pytest.TempPathFactory) -> QdrantResource:
    q = QdrantResource(path=str(tmp_path_factory.mktemp("hybrid") / "qdrant"))
    embed = TextEmbedder(TextParams())
    with q.partition_writes("text", 512, sparse=[words.WORDS_VECTOR]) as writes:
        for key, m in LIBRARY.items():
            found = moments(m["transcript"], m["ocr"], m["tags"], m.get("summary"))
            vectors = embed([mo.text for mo in found])
            about = {"media_kind": ABOUT[key][0], "language": ABOUT[key][1]}
            points = [
                VectorPoint(mo.point_item, v, {**mo.payload(), **about}, _words(mo.text))
                for mo, v in zip(found, vectors, strict=True)
            ]
            writes.replace(key, "search_index", "test", points)
    return q


def test_a_one_word_ocr_line_does_not_outrank_a_paraphrasing_sentence(qdrant: QdrantResource) -> None:
    # the case: dense alone put "unicef" (0.292) above the audiobook sentence (0.284)
    for query in ("egoistisch und kaltherzig", "a selfish and cold hearted man"):
        hits = search(qdrant, query, limit=5)
        ranks = {(h["key"], h["source"]): i for i, h in enumerate(hits)}
        spoken = ranks.get(("audiobook-9a8b7c6d5e", "transcript"))
        assert spoken is not None, (query, hits)
        assert spoken < ranks.get(("poster-1f2e3d4c5b", "ocr"), len(hits)), (query, hits)


def test_a_short_line_still_wins_when_it_is_what_was_asked_for(qdrant: QdrantResource) -> None:
    top = search(qdrant, "unicef", limit=3)[0]
    assert (top["key"], top["source"], top["text"]) == ("poster-1f2e3d4c5b", "ocr", "unicef"), top


def test_exact_rare_words_find_their_moment(qdrant: QdrantResource) -> None:
    top = search(qdrant, "St. Pauli", limit=3)[0]
    assert (top["key"], top["source"]) == ("derby-e1f2a3b4c5", "ocr"), top


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("penalty kick scored by the captain", "derby-e1f2a3b4c5"),
        ("trains carry the containers to Bavaria", "harbour-talk-0a1b2c3d4e"),
        ("deglaze with white wine", "risotto-5f6a7b8c9d"),
        ("Wie viele Container hebt ein Kran pro Stunde?", "harbour-talk-0a1b2c3d4e"),
        ("tide calendar", "harbour-talk-0a1b2c3d4e"),
    ],
)
def test_meaning_and_cross_lingual_queries_keep_working(qdrant: QdrantResource, query: str, key: str) -> None:
    hits = search(qdrant, query, limit=5)
    assert hits[0]["key"] == key, hits[:3]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_filters_apply_to_both_rankings(qdrant: QdrantResource) -> None:
    hits = search(qdrant, "containers", kind="ocr", limit=10)
    assert hits and all(h["source"] == "ocr" for h in hits)
    hits = search(qdrant, "containers", media="risotto-5f6a7b8c9d", limit=10)
    assert all(h["key"] == "risotto-5f6a7b8c9d" for h in hits)


def test_filters_by_media_kind_language_person_and_time(qdrant: QdrantResource) -> None:
    hits = search(qdrant, "cold hearted", filters=Filters(media_kind="audio"))
    assert hits and {h["key"] for h in hits} == {"audiobook-9a8b7c6d5e"}
    hits = search(qdrant, "cooking", filters=Filters(language="DE"))  # codes are matched in lower case
    assert hits and {h["key"] for h in hits} == {"risotto-5f6a7b8c9d"}
    person = ["derby-e1f2a3b4c5", "audiobook-9a8b7c6d5e"]
    hits = search(qdrant, "containers", filters=Filters(person_media=person))
    assert hits and {h["key"] for h in hits} <= set(person)
    assert search(qdrant, "containers", media="risotto-5f6a7b8c9d", filters=Filters(person_media=person)) == []
    # moments overlapping 20-40 s of their media: timed ones only, each overlapping the span
    hits = search(qdrant, "containers", limit=20, filters=Filters(time_from=20.0, time_to=40.0))
    assert hits and all(h["start"] is not None and h["start"] <= 40.0 and h["end"] >= 20.0 for h in hits)
    with pytest.raises(ValueError, match="after"):
        search(qdrant, "x", filters=Filters(time_from=5.0, time_to=1.0))
    with pytest.raises(ValueError, match="media kind"):
        search(qdrant, "x", filters=Filters(media_kind="podcast"))


def test_counts_per_source_come_with_the_hits(qdrant: QdrantResource) -> None:
    result = search_moments(qdrant, "containers in the harbour", limit=3)
    assert len(result["hits"]) == 3
    assert set(result["counts"]) <= {"transcript", "ocr", "tags", "summary"}
    assert sum(result["counts"].values()) >= 3
    for source in {h["source"] for h in result["hits"]}:
        assert result["counts"][source] >= 1
    only = search_moments(qdrant, "containers in the harbour", Filters(kind="ocr"), limit=3)
    assert set(only["counts"]) == {"ocr"}


def test_points_indexed_before_words_existed_are_still_found(tmp_path: Path) -> None:
    q = QdrantResource(path=str(tmp_path / "qdrant"))
    embed = TextEmbedder(TextParams())
    found = moments(AUDIOBOOK, [], [], None)
    with q.partition_writes("text", 512) as writes:  # as search_index version 2 wrote them: dense only
        points = [
            VectorPoint(mo.point_item, v, mo.payload())
            for mo, v in zip(found, embed([m.text for m in found]), strict=True)
        ]
        writes.replace("audiobook-9a8b7c6d5e", "search_index", "v2", points)
    hits = search(q, "cold hearted and selfish", limit=3)
    assert hits and hits[0]["key"] == "audiobook-9a8b7c6d5e"
