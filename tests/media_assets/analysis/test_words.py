"""BM25 words and the fusion of the meaning and the words rankings (analysis/words.py)."""

from __future__ import annotations

import pytest

from media_assets.analysis.words import (
    MIN_COVERAGE,
    SHORT_WORDS,
    coverage,
    dense_score,
    document_words,
    fuse,
    query_words,
    short_text_factor,
)


def test_words_keep_numbers_fold_case_and_accents_and_drop_stop_words() -> None:
    assert len(document_words("The crane at the pier")[0]) == 2  # crane, pier: "the", "at" are stop words
    assert query_words("Kran und Hafen")[0] == query_words("kran hafen")[0]  # German stop word, case
    assert query_words("fährt")[0] == query_words("FAHRT")[0]  # accents folded
    assert len(query_words("invoice 2024-0815")[0]) == 3  # numbers are words too: invoice, 2024, 0815
    assert document_words("und the der") == ([], [])  # nothing but stop words: no vector
    _, weights = document_words("crane crane crane pier")
    assert weights[0] != weights[1]  # term frequency is kept; the collection's IDF weighs terms


def test_coverage_is_the_share_of_query_words_a_text_has() -> None:
    terms, _ = query_words("invoice 2024-0815")
    assert coverage(terms, "Invoice 2024-0815 is overdue") == 1.0
    assert coverage(terms, "Invoice 2023-0412 has been paid") == pytest.approx(1 / 3)
    assert coverage([], "anything") == 0.0


def test_short_texts_keep_less_of_their_meaning_score() -> None:
    assert short_text_factor("unicef") < short_text_factor("unicef annual report") < 1.0
    assert short_text_factor(" ".join(["word"] * SHORT_WORDS)) == 1.0
    assert short_text_factor("") == pytest.approx(0.75)
    # a window is judged by its best sentence when that scores higher than the whole window
    assert dense_score(0.10, 0.30, "a window of many words here") == 0.30
    assert dense_score(0.30, 0.10, "a window of many words here") == 0.30
    assert dense_score(0.30, None, "unicef") == pytest.approx(0.30 * short_text_factor("unicef"))


def test_fusion_adds_ranks_weighted_by_coverage() -> None:
    # found by both rankings beats found by one
    fused = fuse([("x", 0.5), ("y", 0.4)], [("y", 1.0)])
    assert [pid for pid, _ in fused] == ["y", "x"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61, abs=1e-6)
    # the meaning list is ordered by score whatever order it comes in
    assert [pid for pid, _ in fuse([("a", 0.1), ("b", 0.9)], [])] == ["b", "a"]
    # a words hit covering too little of the query adds nothing and takes no rank
    low = MIN_COVERAGE / 2
    fused = dict(fuse([("x", 0.5)], [("noise", low), ("z", 1.0)]))
    assert "noise" not in fused or fused["noise"] == 0.0
    assert fused["z"] == pytest.approx(1 / 61, abs=1e-6)
    # a half-covering words hit counts half
    assert dict(fuse([], [("h", 0.5)]))["h"] == pytest.approx(0.5 / 61, abs=1e-6)
    assert fuse([], []) == []
