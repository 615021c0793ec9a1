"""A person's dossier: every appearance with what was said, shown and flagged around it.

`medialens people show ID` answers "where does this person appear, and in what context": per media
its appearances (time, face, box), the transcript spoken within `window_s` of each appearance, the
on-screen text visible at that moment, the safety labels of those keyframes and the media's
verdict, who else is in the same keyframes, and a summary of all that through the same summarizer
as the `summary` asset (LLM when configured, the same untrusted-input rules, extractive otherwise).
It only reads what the assets stored; nothing is inferred again and no identity is looked up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from media_assets.analysis import summary as summ
from resources.store import MediaStore

WINDOW_S = 15.0  # transcript within this many seconds of an appearance belongs to it
MAX_SNIPPETS = 12  # per media, so a person in a 2-hour talk does not print the whole transcript


def _table(store: MediaStore, asset: str, key: str, field: str = "table") -> list[dict[str, Any]]:
    manifest = store.read_manifest(asset, key) or {}
    path = manifest.get(field)
    return store.read_table(path).to_pylist() if path and Path(path).exists() else []


def media_context(store: MediaStore, key: str, times: list[float], window_s: float = WINDOW_S) -> dict[str, Any]:
    """Transcript, on-screen text and safety flags of one media around the given times."""
    near = lambda a, b: any(a - window_s <= t <= b + window_s for t in times)  # noqa: E731
    segments = [s for s in _table(store, "transcript", key) if near(s["start"], s["end"])][:MAX_SNIPPETS]
    lines = [
        line
        for line in _table(store, "ocr_text", key, "lines_table")
        if any(line["first_t"] - 0.5 <= t <= line["last_t"] + 0.5 for t in times)
    ]
    safety = store.read_manifest("safety", key) or {}
    flags = [
        {"t": r["t"], "label": r["label"], "score": round(r["score"], 3)}
        for r in _table(store, "safety", key)
        if any(abs(r["t"] - t) < 1e-3 for t in times) and not str(r["label"]).startswith("FACE_")
    ]
    return {
        "transcript": [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in segments],
        "ocr": [{"text": x["text"], "first_t": x["first_t"], "last_t": x["last_t"]} for x in lines],
        "safety": {"verdict": safety.get("verdict"), "labels": flags} if safety else None,
    }


def build_dossier(
    store: MediaStore,
    person: dict[str, Any],
    appearances: list[dict[str, Any]],
    co_appearances: list[dict[str, Any]],
    summarizer: Callable[[summ.SummaryInputs], summ.Summary] | None = None,
) -> dict[str, Any]:
    """The dossier of one person (see the module docstring) as a JSON-ready dict."""
    pid = person["person_id"]
    by_media: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in appearances:
        if a["person_id"] == pid:
            by_media[a["media"]].append(a)
    media_out, segments, lines = [], [], []
    for key in person.get("media") or sorted(by_media):
        apps = sorted(by_media.get(key, []), key=lambda a: a["t"])
        if not apps:
            continue
        source = (store.read_manifest("media_file", key) or {}).get("source_name")
        context = media_context(store, key, [a["t"] for a in apps])
        media_out.append(
            {
                "key": key,
                "source_name": source,
                "appearances": [{"t": a["t"], "face_id": a["face_id"], "box": a["box"]} for a in apps],
                **context,
            }
        )
        segments += context["transcript"]
        lines += context["ocr"]
    seen_with = [
        {
            "person_id": c["person_b"] if c["person_a"] == pid else c["person_a"],
            "same_keyframe": c["same_keyframe"],
            "same_media": c["same_media"],
        }
        for c in co_appearances
        if pid in (c["person_a"], c["person_b"])
    ]
    out = {
        **person,
        "media": media_out,
        "seen_with": sorted(seen_with, key=lambda c: (-c["same_keyframe"], -c["same_media"], c["person_id"])),
        "summary": None,
    }
    if summarizer is not None:
        inputs = summ.SummaryInputs.from_analyses(segments=segments, ocr_lines=lines, kind="video")
        out["summary"] = summarizer(inputs).to_json() if (segments or lines) else None
    return out


__all__ = ["WINDOW_S", "build_dossier", "media_context"]
