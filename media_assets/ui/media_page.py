"""The Media page: what one media file says and shows, with the player at the moment linked to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.ui.state import open_media, open_search
from media_assets.ui.text import escape_markdown, link_second, mmss


def render(key: str, t: int) -> None:
    from media_assets.service.show import UnknownMedia, show
    from resources.store import MediaStore

    st.button("← Search", key="back", on_click=open_search, args=(str(st.session_state.get("q", "")),), type="tertiary")
    store = MediaStore(root=str(Paths.from_env().store))
    try:
        obj = show(store, key)
    except UnknownMedia:
        st.title("Media")
        st.error(f"No media with key {key!r}. It may have been forgotten, or the link is mistyped.")
        return
    except OSError as exc:  # the store unreadable (a removed disk, permissions)
        st.error(f"Cannot read the results of {key!r}: {exc}")
        return
    summary = obj.get("summary") or {}
    st.title(escape_markdown(summary.get("title") or obj.get("source_name") or key))
    st.caption(f"{escape_markdown(obj.get('source_name') or '')} · {obj.get('kind') or '?'} · {key}")
    if summary.get("summary"):
        st.markdown(escape_markdown(summary["summary"]))
    player, facts = st.columns([3, 2], gap="large")  # the player beside the facts, not screen-wide
    with player:
        _player(obj, t)
    with facts:
        _facts(obj)
    _transcript(key, obj, t)
    _ocr(key, obj)


def _player(obj: dict[str, Any], t: int) -> None:
    """The original file, started at `t`; images are shown whole."""
    path = (obj.get("media") or {}).get("path")
    if not path or not Path(path).is_file():
        st.warning(f"The media file is not in the store ({path or 'not ingested yet'}).")
        return
    if obj["kind"] == "video":
        st.video(path, start_time=t)
    elif obj["kind"] == "audio":
        st.audio(path, start_time=t)
    else:
        st.image(path)


def _facts(obj: dict[str, Any]) -> None:
    """What a reviewer checks first: the safety verdict, faces, tags."""
    safety, faces, tags = obj.get("safety"), obj.get("faces"), obj.get("tags")
    left, mid, right = st.columns(3)
    left.metric("Safety", safety["verdict"] if safety else "n/a")
    mid.metric("Faces", len(faces) if faces is not None else "n/a")
    duration = obj.get("duration_s")
    right.metric("Duration", mmss(duration) if duration is not None else "n/a")
    if safety and safety.get("reasons"):
        st.caption("Safety: " + escape_markdown("; ".join(safety["reasons"])))
    if tags:
        st.markdown("**Tags:** " + escape_markdown(", ".join(f"{r['label']} ({r['score']:.2f})" for r in tags)))


def _moment(key: str, label: str, t: float | None, text: str, row: str, current: bool = False) -> None:
    """One timed line: a button that reloads the page with the player there, and the words."""
    when, words = st.columns([1, 6], vertical_alignment="center")
    second = link_second(t)
    when.button(label, key=row, on_click=open_media, args=(key, second), type="tertiary")
    words.markdown(f"**{escape_markdown(text)}**" if current else escape_markdown(text))


def _transcript(key: str, obj: dict[str, Any], t: int) -> None:
    transcript = obj.get("transcript")
    if transcript is None:
        return
    language = transcript.get("language")
    st.subheader("Transcript" + (f" ({language})" if language else ""))
    if not transcript["segments"]:
        st.caption("Nothing was said.")
    for i, seg in enumerate(transcript["segments"]):
        current = seg["start"] <= t < seg["end"]  # the segment the player starts in, in bold
        _moment(key, mmss(seg["start"]), seg["start"], seg["text"], f"seg{i}", current)


def _ocr(key: str, obj: dict[str, Any]) -> None:
    ocr = obj.get("ocr")
    if ocr is None:
        return
    st.subheader("Text on screen")
    if not ocr["lines"]:
        st.caption("No text was read.")
    for i, line in enumerate(ocr["lines"]):
        first, last = line.get("first_t"), line.get("last_t")
        same = last is None or link_second(last) == link_second(first)
        label = mmss(first) if same else f"{mmss(first)}–{mmss(last)}"
        _moment(key, label, first, line["text"], f"ocr{i}")
