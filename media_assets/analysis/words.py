"""The lexical half of hybrid search: a moment's words as a BM25 sparse vector, and the fusion of the
meaning (dense) ranking with the words ranking.

Why both: the multilingual sentence embedding finds paraphrases and crosses languages ("egoistisch
und kaltherzig" finds "cold-hearted and rather selfish"), but it ranks very short texts unreliably
high (a one-word OCR line "UNICEF" scored above that sentence) and blurs exact rare words (names,
numbers, jargon) that a user types expecting them back. BM25 over the words is the opposite: exact,
language-bound. Reciprocal rank fusion (RRF, k = 60) adds the two rankings by rank, so neither
scale has to be calibrated against the other; a moment found by both rises.

Measured on the moment-search set (`bench/ranking.py`, 41 EN/DE/cross-lingual queries), three rules
made the difference, each against a failure seen there:
- A words hit counts by how much of the query it covers (`coverage`): one shared common word ("one",
  "city") gave a wrong-language moment a full rank-1 boost and sank cross-lingual answers; a hit
  covering less than `MIN_COVERAGE` of the query's words adds nothing.
- The meaning ranking judges a transcript window by its best sentence as well as the whole window
  (`dense_score`): the window's vector averages three sentences, so the one that matched is
  diluted, while a one-line OCR text is not.
- A text of fewer than `SHORT_WORDS` words keeps less of its meaning score (`short_text_factor`).

BM25 here is Qdrant's (`qdrant_edge.Bm25`, no model files): words split at anything not a letter or
digit (Qdrant's `word` tokenizer: its `multilingual` one drops numbers, so "invoice 2024-0815" kept
only "invoice"; the price is that Chinese or Japanese runs stay one token), lower case, accents
folded, English and German stop words dropped, no stemming (a stemmer is per language; the library is
multilingual). Document vectors carry term frequencies; the collection's IDF modifier weighs the
terms at query time, over the whole library, so nothing here has to be recomputed as it grows.
Changing these settings changes the stored vectors: bump `search_index`'s algorithm revision.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from functools import cache
from typing import Any, TypeVar

WORDS_VECTOR = "words"  # the sparse vector's name in the `text` collection
RRF_K = 60  # the usual constant: rank 1 adds 1/61, rank 10 1/70
SHORT_WORDS = 4
SHORT_PENALTY = 0.25
MIN_COVERAGE = 0.5
AVG_WORDS = 40.0  # BM25's expected document length: a transcript window is 30-60 words, a line 3-8

K = TypeVar("K", bound=Hashable)
_WORD = re.compile(r"\w+", re.UNICODE)


@cache
def _bm25() -> Any:
    import qdrant_edge as qe

    config = qe.Bm25Config(
        avg_len=AVG_WORDS,
        tokenizer=qe.TokenizerType.Word,
        lowercase=True,
        ascii_folding=True,
        stopwords=qe.StopwordsSet(languages={qe.Language.English, qe.Language.German}),
        stemmer=qe.DisabledStemmer(),
    )
    return qe.Bm25(config)


def document_words(text: str) -> tuple[list[int], list[float]]:
    """A moment's words as sparse (term ids, BM25 term-frequency weights); empty for no words."""
    v = _bm25().embed_document(text)
    return list(v.indices), [float(x) for x in v.values]


def query_words(text: str) -> tuple[list[int], list[float]]:
    """A query's words as sparse (term ids, weight 1 each): the collection's IDF does the weighing."""
    v = _bm25().embed_query(text)
    return list(v.indices), [float(x) for x in v.values]


def coverage(query_terms: Sequence[int], text: str) -> float:
    """The share of the query's terms that `text` contains (0 when the query has none)."""
    if not query_terms:
        return 0.0
    have = set(document_words(text)[0])
    return sum(t in have for t in query_terms) / len(query_terms)


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def short_text_factor(text: str) -> float:
    """How much of its meaning score a text keeps: 1 from `SHORT_WORDS` words on (see module doc)."""
    missing = max(0, SHORT_WORDS - word_count(text))
    return 1.0 - SHORT_PENALTY * missing / SHORT_WORDS


def dense_score(window: float, best_sentence: float | None, text: str) -> float:
    """What the meaning ranking orders by: the better of the window's and its best sentence's
    cosine, lowered for short texts."""
    best = window if best_sentence is None else max(window, best_sentence)
    return best * short_text_factor(text)


def fuse(
    dense: Sequence[tuple[K, float]],
    lexical: Sequence[tuple[K, float]],
    k: int = RRF_K,
) -> list[tuple[K, float]]:
    """One ranking from the meaning hits `(id, dense_score)` and the words hits `(id, coverage)`,
    each list best first: reciprocal rank fusion, a words hit weighted by its coverage (nothing
    under `MIN_COVERAGE`). Returns `(id, fused score)`, best first; ties keep the meaning order."""
    fused: dict[K, float] = {}
    ranked = sorted(dense, key=lambda h: -h[1])
    for rank, (pid, _) in enumerate(ranked, start=1):
        fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    covering = [(pid, cover) for pid, cover in lexical if cover >= MIN_COVERAGE]
    for rank, (pid, cover) in enumerate(covering, start=1):
        fused[pid] = fused.get(pid, 0.0) + cover / (k + rank)
    order = sorted(fused, key=lambda pid: -fused[pid])  # stable: meaning order first among ties
    return [(pid, round(fused[pid], 6)) for pid in order]
