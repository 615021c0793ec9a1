"""The Search page: moments that match a query, each one click away from its media at that second."""

from __future__ import annotations

from typing import Any

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.service.search import KINDS, MEDIA_KINDS, Filters, media_of_person, search_moments
from media_assets.ui.state import open_media
from media_assets.ui.text import escape_markdown, highlight, link_second, mmss, nearest_keyframe, source_label

ANY = "any"
LIMIT = 20


def render() -> None:
    st.title("Search")
    if "q" not in st.session_state:  # a deep link's query fills the box once; typing takes over
        st.session_state["q"] = st.query_params.get("q", "")
    query = st.text_input("Search spoken words, slide text, tags and summaries", key="q").strip()
    from media_assets.service.people import definitions_for

    paths = Paths.from_env()
    defs = definitions_for(paths)  # the resources, built once per page run: filters and search share them
    resources = defs.resources
    filters = _filters(defs, paths)
    if query:
        st.query_params["q"] = query  # the address bar is always a link to these results
    elif "q" in st.query_params:
        del st.query_params["q"]
    if not query:
        st.info('Type what was said or shown, e.g. "crane offline at pier 4".')
        return
    try:
        result = search_moments(resources["qdrant"], query, filters, limit=LIMIT)
    except ValueError as exc:  # filters that contradict each other, image search without CLIP
        st.error(str(exc))
        return
    except (OSError, TimeoutError) as exc:  # Qdrant server unreachable, embedded store locked
        st.error(f"Search is unavailable right now: {exc}")
        return
    hits: list[dict[str, Any]] = result["hits"]
    counts: dict[str, int] = result["counts"]
    if counts:
        st.caption("Moments considered: " + " · ".join(f"{source_label(k)} {n}" for k, n in sorted(counts.items())))
    if not hits:
        st.warning("No matches. Try other words, widen the filters, or analyse more media (`medialens analyse`).")
        return
    _hits(resources["store"], hits, query)


def _filters(defs: Any, paths: Paths) -> Filters:
    """The sidebar's narrowing of the search (each optional; they combine)."""
    from media_assets.service.people import list_people

    store = defs.resources["store"]
    people: dict[str, str] = {ANY: ANY} | {
        p["person_id"]: f"{p['name'] or p['person_id']} ({len(p['media'])} media)"
        for p in list_people(defs, paths, refresh=False)
    }
    with st.sidebar:
        st.header("Filters")
        kind = st.selectbox("Source", [ANY, *KINDS], format_func=source_label, key="f_kind")
        media_kind = st.selectbox("Media kind", [ANY, *MEDIA_KINDS], key="f_media_kind")
        language = st.text_input("Spoken language (en, de, ...)", key="f_language").strip()
        person = st.selectbox("Person seen in the media", list(people), format_func=people.__getitem__, key="f_person")
        time_from = st.number_input("From second", min_value=0.0, value=None, step=1.0, key="f_from")
        time_to = st.number_input("To second", min_value=0.0, value=None, step=1.0, key="f_to")
    return Filters(
        kind=None if kind == ANY else kind,
        media_kind=None if media_kind == ANY else media_kind,
        language=language or None,
        person_media=None if person in (None, ANY) else tuple(media_of_person(store, str(person))),
        time_from=time_from,
        time_to=time_to,
    )


def _hits(store: Any, hits: list[dict[str, Any]], query: str) -> None:
    """One row per hit: its keyframe, where and when, the snippet, and the way to its media."""
    from media_assets.service.show import UnknownMedia, show

    details: dict[str, dict[str, Any] | None] = {}  # show() once per media, not per hit
    for i, hit in enumerate(hits):
        key = hit["key"]
        if key not in details:
            try:
                details[key] = show(store, key)
            except UnknownMedia:  # forgotten since it was indexed
                details[key] = None
        media = details[key]
        with st.container(border=True):
            thumb, body, action = st.columns([2, 7, 2], vertical_alignment="center")
            frame = nearest_keyframe(media.get("keyframes") if media else None, hit["start"])
            with thumb:
                if frame is not None:
                    st.image(str(frame["path"]), width="stretch")
                else:
                    st.markdown(":material/graphic_eq:" if media and media["kind"] == "audio" else "")
            with body:
                name = escape_markdown((media or {}).get("source_name") or key)
                t = link_second(hit["start"], seen=hit["source"] != "transcript")  # where it opens
                when = mmss(t)
                st.markdown(f"**{name}** · {source_label(hit['source'])} · {when} · score {hit['score']:.4f}")
                st.markdown(highlight(hit["text"], query))
            with action:
                st.button(f"Open at {mmss(t)}", key=f"hit{i}", on_click=open_media, args=(key, t))
