"""The Media page: what one media file says and shows, with the player at the moment linked to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.ui.state import open_media, open_search
from media_assets.ui.text import escape_markdown, link_second, mmss

FACE_PX = 80  # a face's thumbnail on the timeline
MAX_KEYFRAMES = 200  # a long video's timeline stays a page, not a scroll of thousands


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
    _timeline(store, key, obj)
    _analyses(key, obj)


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


def _moment(
    key: str, label: str, t: float | None, text: str, row: str, current: bool = False, seen: bool = False
) -> None:
    """One timed line: a button that reloads the page with the player there, and the words."""
    when, words = st.columns([1, 6], vertical_alignment="center")
    second = link_second(t, seen)
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
        start = link_second(first, seen=True)  # where the button opens the player
        same = last is None or link_second(last, seen=True) == start
        label = mmss(start) if same else f"{mmss(start)}–{mmss(link_second(last, seen=True))}"
        _moment(key, label, first, line["text"], f"ocr{i}", seen=True)


def _timeline(store: Any, key: str, obj: dict[str, Any]) -> None:
    """Each keyframe with who is in it, poses, safety labels and tags; its time seeks the player."""
    from media_assets.ui.timeline import keyframe_timeline

    if not obj.get("keyframes"):
        return
    from media_assets.service.people import face_thumbnails

    moments = keyframe_timeline(obj, _keyframe_tags(store, key), _person_names())
    shown = moments[:MAX_KEYFRAMES]
    thumbs = face_thumbnails(store, [f for m in shown for f in m.face_ids], FACE_PX)
    st.subheader(f"Keyframes ({len(moments)})")
    for i, m in enumerate(shown):
        when, thumb, faces, what = st.columns([1, 2, 2, 5], vertical_alignment="center")
        second = link_second(m.t, seen=True)
        when.button(mmss(second), key=f"kf{i}", on_click=open_media, args=(key, second), type="tertiary")
        if Path(m.path).is_file():
            thumb.image(m.path, width="stretch")
        pictures: list[tuple[bytes, str]] = [
            (pic, label) for f, label in zip(m.face_ids, m.faces, strict=True) if (pic := thumbs.get(f))
        ]
        if pictures:
            faces.image([p for p, _ in pictures], caption=[c for _, c in pictures], width=FACE_PX)
        facts = []
        if m.faces:
            facts.append("**Faces:** " + escape_markdown(", ".join(m.faces)))
        if m.poses:
            facts.append(f"**Poses:** {m.poses}")
        if m.safety:
            facts.append("**Safety:** " + escape_markdown(", ".join(m.safety)))
        if m.tags:
            facts.append("**Tags:** " + escape_markdown(", ".join(m.tags[:5])))
        what.markdown("  \n".join(facts) or "nothing found")
    if len(moments) > MAX_KEYFRAMES:
        st.caption(f"The first {MAX_KEYFRAMES} of {len(moments)} keyframes are shown.")


def _keyframe_tags(store: Any, key: str) -> list[dict[str, Any]]:
    manifest = store.read_manifest("tags", key) or {}
    path = manifest.get("table")
    return store.read_table(path).select(["t", "label", "score"]).to_pylist() if path and Path(path).exists() else []


def _person_names() -> dict[str, str | None]:
    """Names users gave to persons, as last clustered; none before any clustering."""
    from media_assets.service.people import definitions_for, list_people

    paths = Paths.from_env()
    return {p["person_id"]: p["name"] for p in list_people(definitions_for(paths), paths, refresh=False)}


def _analyses(key: str, obj: dict[str, Any]) -> None:
    """Which version of each analysis this media has, whether it is stale (a model or setting
    changed since, `medialens stale`), and a link to its partition in the Dagster UI."""
    from media_assets.service.headless import dagster_instance
    from media_assets.service.library import stale_of
    from media_assets.ui.timeline import partition_url

    versions: dict[str, str] = obj.get("versions") or {}
    if not versions:
        return
    st.subheader("Analyses")
    try:
        stale = stale_of(dagster_instance(Paths.from_env()), key)
    except Exception as exc:  # the Dagster instance unreadable: the versions are still worth showing
        stale = {}
        st.caption(f"Staleness unknown: {exc}")
    rows = []
    for asset, version in versions.items():
        why = f" · **stale**: {escape_markdown(stale[asset])}" if asset in stale else " · current"
        rows.append(f"- [{escape_markdown(asset)}]({partition_url(asset, key)}) · version `{version}`{why}")
    missing = [a for a, why in stale.items() if a not in versions]
    if missing:
        rows.append("- not analysed yet: " + escape_markdown(", ".join(missing)))
    st.markdown("\n".join(rows))
    if stale:
        st.caption("`medialens reanalyse --all-stale` redoes what is stale (only that).")
    st.caption("Each analysis links to its partition in the Dagster UI (`make dev`; MEDIALENS_DAGSTER_URL elsewhere).")
