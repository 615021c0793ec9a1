"""Pure helpers of the results UI (no Streamlit), so they can be unit-tested on their own."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Characters Streamlit's markdown would interpret in a snippet: OCR and transcripts are data, not
# markup ("$5" must not start LaTeX, "*" or "_" must not start emphasis, "<" must not open HTML).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")
_WORD = re.compile(r"\w+", re.UNICODE)


# What each kind of search hit is, in a reader's words (the CLI's `source` values are the keys).
SOURCE_LABELS = {
    "transcript": "speech",
    "ocr": "text on screen",
    "tags": "tag",
    "summary": "summary",
    "image": "image",
}


def source_label(kind: str) -> str:
    """A hit's source as the UI names it (an unknown kind as it is)."""
    return SOURCE_LABELS.get(kind, kind)


def escape_markdown(text: str) -> str:
    """`text` shown literally by `st.markdown`."""
    return _MARKDOWN.sub(r"\\\1", text)


def query_words(query: str) -> list[str]:
    """The query's words to highlight: longest first so "cranes" wins over "crane" in one spot."""
    words = {w.lower() for w in _WORD.findall(query) if len(w) > 1 or w.isdigit()}
    return sorted(words, key=lambda w: (-len(w), w))


def highlight(text: str, query: str) -> str:
    """`text` as markdown with the query's words in bold (case-insensitive, whole words, and
    words the query word starts: "crane" marks "Cranes"), so a reviewer sees at a glance why a
    moment matched; everything else is escaped, so a snippet cannot inject markup."""
    words = query_words(query)
    if not words:
        return escape_markdown(text)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\w*", re.IGNORECASE | re.UNICODE)
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        out.append(escape_markdown(text[pos : m.start()]))
        out.append(f"**{escape_markdown(m.group(0))}**")
        pos = m.end()
    out.append(escape_markdown(text[pos:]))
    return "".join(out)


def mmss(seconds: float | None) -> str:
    """A moment's time the way players show it (`1:05:09` past an hour); "-" for untimed hits."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def link_second(seconds: float | None, seen: bool = False) -> int:
    """The whole second a deep link opens a moment at; 0 for untimed hits (summary).

    Heard moments (speech) round down, so the player starts just before the words. Seen moments
    (a keyframe's OCR line, face, tag, label) round up: the keyframe at 5.96 s is the first frame
    of its slide, and the frame at 5 s still shows the one before."""
    if seconds is None or not math.isfinite(seconds):
        return 0
    return max(0, math.ceil(seconds) if seen else math.floor(seconds))


def parse_second(raw: str | None) -> int:
    """`t` of a deep link (`?media=KEY&t=12`, also `12.5`); ValueError for anything else."""
    if raw is None or raw == "":
        return 0
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    return math.floor(value)


def nearest_keyframe(keyframes: Sequence[Mapping[str, Any]] | None, t: float | None) -> Mapping[str, Any] | None:
    """The keyframe closest to `t` (the first for untimed hits); None for media without frames."""
    if not keyframes:
        return None
    at = 0.0 if t is None else t
    return min(keyframes, key=lambda kf: abs(float(kf["t"]) - at))
