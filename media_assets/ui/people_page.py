"""The People page: every person as a face in a grid, and each person's dossier with its moments.

Every change here (name, merge, split, forget) goes through `service/people.py`, the functions
`medialens people` and `medialens forget person` call: the same checks, the same append-only
decision log, the same re-clustering run. Pages only read the dossiers as last clustered; a
change re-clusters, and the next run of the script shows the result.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.service import people as people_service
from media_assets.ui.state import open_media, open_page, open_person
from media_assets.ui.text import escape_markdown, link_second, mmss

COLUMNS = 5  # persons per row of the grid
PAGE_SIZE = 60  # persons shown before "Show more"
NOTICE = "people_notice"  # session key: (kind, text) of the last change, shown once on the next run
WHY_UNASSIGNED = {
    "small": "too small",
    "low_score": "unclear",
    "small_cluster": "too few alike",
    "rejected": "rejected from a person",
}


def _defs() -> Any:
    return people_service.definitions_for(Paths.from_env())


def _label(person: dict[str, Any]) -> str:
    """The person's name, else its anonymous id (names only ever come from the user)."""
    return str(person["name"] or person["person_id"])


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _notice() -> None:
    """What the last change did (set by the action callbacks, which run before the page)."""
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        kind, text = notice
        getattr(st, kind)(text)


def _say(kind: str, text: str) -> None:
    st.session_state[NOTICE] = (kind, text)


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnails(root: str, face_ids: tuple[str, ...], stamp: int) -> dict[str, bytes | None]:
    """Face crops by face id, per dossier state (`stamp`), so reruns do not re-read the tables."""
    from resources.store import MediaStore

    return people_service.face_thumbnails(MediaStore(root=root), face_ids)


# -- the grid -------------------------------------------------------------------------------------
def render() -> None:
    """The grid of persons, most seen first; "hide people seen only once" drops one-off faces."""
    st.title("People")
    _notice()
    defs = _defs()
    try:
        people = people_service.list_people(defs, Paths.from_env(), refresh=False)
        unassigned = people_service.unassigned_faces(defs)
    except OSError as exc:  # the store unreadable (a removed disk, permissions)
        st.error(f"Cannot read the person dossiers: {exc}")
        return
    # One appearance = one face in one keyframe: the passer-by, the face on a poster. A person seen
    # in several keyframes of a single video is still someone the video is about, so it stays.
    hide_once = st.checkbox("Hide people seen only once", key="people_hide_once")
    shown = sorted(
        (p for p in people if not (hide_once and p["appearances"] <= 1)),
        key=lambda p: (-p["appearances"], p["person_id"]),
    )
    caption, refresh = st.columns([5, 1], vertical_alignment="center")
    caption.caption(_counts(people, shown, unassigned))
    # media the upload sensor analysed are in the dossiers after their next clustering: this runs it
    refresh.button("Re-cluster", key="people_refresh", on_click=_refresh, help="Group the faces of new media too")
    if not people:
        st.info("No persons yet: analyse media with faces (`medialens analyse FILE`).")
        return
    if not shown:
        st.info("Everyone here was seen only once: untick the filter to see them.")
        return
    limit = int(st.session_state.get("people_limit", PAGE_SIZE))
    _grid(defs, shown[:limit])
    if len(shown) > limit:
        st.button(
            f"Show more ({len(shown) - limit} left)",
            key="people_more",
            on_click=lambda: st.session_state.update(people_limit=limit + PAGE_SIZE),
        )


def _counts(people: list[dict[str, Any]], shown: list[dict[str, Any]], unassigned: dict[str, int]) -> str:
    parts = [_count(len(people), "person") + (f", {len(shown)} shown" if len(shown) != len(people) else "")]
    if unassigned:
        why = ", ".join(f"{n} {WHY_UNASSIGNED.get(reason, reason)}" for reason, n in sorted(unassigned.items()))
        parts.append(f"{sum(unassigned.values())} faces in no person ({why} to tell who it is)")
    return " · ".join(parts)


def _grid(defs: Any, people: list[dict[str, Any]]) -> None:
    reps = people_service.representatives(defs)
    store = defs.resources["store"]
    wanted = tuple(sorted(reps[p["person_id"]] for p in people if p["person_id"] in reps))
    thumbs = _thumbnails(str(store.path), wanted, people_service.dossiers_stamp(defs))
    for start in range(0, len(people), COLUMNS):
        for col, person in zip(st.columns(COLUMNS), people[start : start + COLUMNS], strict=False):
            with col.container(border=True):
                pid = person["person_id"]
                thumb = thumbs.get(reps.get(pid, ""))
                if thumb:
                    st.image(thumb, width=people_service.THUMBNAIL_PX)
                else:
                    st.markdown(":material/face:")
                st.button(_label(person), key=f"person-{pid}", on_click=open_person, args=(pid,), type="tertiary")
                st.caption(f"{_count(person['appearances'], 'appearance')} · {len(person['media'])} media")


# -- one person's dossier -------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the dossier ...", max_entries=64)
def _dossier(home: str, person_id: str, stamp: int) -> dict[str, Any]:
    """The dossier as `medialens people show ID --json` has it, once per dossier state (`stamp`):
    its summary may come from an LLM, and every click on this page reruns the script."""
    paths = Paths.from_env()
    return people_service.dossier(people_service.definitions_for(paths), paths, person_id, refresh=False)


def render_dossier(person_id: str) -> None:
    """One person: name, counts, summary, each appearance a link to its moment, and the changes."""
    st.button("← People", key="back-people", on_click=open_page, args=("people",), type="tertiary")
    _notice()
    defs = _defs()
    paths = Paths.from_env()
    try:
        shown = _dossier(str(paths.home), person_id, people_service.dossiers_stamp(defs))
    except people_service.UnknownPerson:
        st.title("Person")
        st.error(
            f"No person with id {person_id!r}. It may have been merged, split off or forgotten, "
            "or the link is mistyped."
        )
        return
    except OSError as exc:
        st.error(f"Cannot read the dossier of {person_id!r}: {exc}")
        return
    dossier = shown["dossier"]
    st.title(escape_markdown(_label(shown)))
    picture, facts = st.columns([1, 5], vertical_alignment="center")
    with picture:
        rep = people_service.representatives(defs).get(person_id)
        thumb = people_service.face_thumbnail(defs.resources["store"], rep) if rep else None
        if thumb:
            st.image(thumb, width=people_service.THUMBNAIL_PX)
    with facts:
        st.caption(f"{person_id}" + ("" if shown["name"] else " · anonymous until you name it"))
        left, mid, right = st.columns(3)
        left.metric("Appearances", len(shown["appearances"]))
        mid.metric("Media", len(shown["media"]))
        right.metric("Seen with", len(dossier["seen_with"]))
    if dossier["summary"]:
        st.markdown(f"**{escape_markdown(dossier['summary']['title'])}**")
        st.markdown(escape_markdown(dossier["summary"]["summary"]))
    for i, media in enumerate(dossier["media"]):
        _media(i, media)
    _seen_with(dossier["seen_with"])
    _actions(defs, shown)


def _media(i: int, media: dict[str, Any]) -> None:
    """One media's appearances, each a button that opens the player there, and the words around."""
    key = media["key"]
    st.subheader(escape_markdown(media["source_name"] or key))
    st.caption(key)
    times = st.columns(min(8, max(1, len(media["appearances"]))))
    for j, app in enumerate(media["appearances"]):
        second = link_second(app["t"], seen=True)
        times[j % len(times)].button(
            f"Seen at {mmss(second)}", key=f"app-{i}-{j}", on_click=open_media, args=(key, second)
        )
    for j, seg in enumerate(media["transcript"]):
        _line(key, seg["start"], f"said: {seg['text']}", f"said-{i}-{j}")
    for j, line in enumerate(media["ocr"]):
        _line(key, line["first_t"], f"shown: {line['text']}", f"shown-{i}-{j}", seen=True)
    safety = media.get("safety")
    if safety and safety.get("verdict") not in (None, "safe"):
        labels = ", ".join(x["label"] for x in safety["labels"])
        st.warning(f"Safety: {safety['verdict']}" + (f" ({labels})" if labels else ""))


def _line(key: str, t: float, text: str, row: str, seen: bool = False) -> None:
    when, words = st.columns([1, 6], vertical_alignment="center")
    second = link_second(t, seen)
    when.button(mmss(second), key=row, on_click=open_media, args=(key, second), type="tertiary")
    words.markdown(escape_markdown(text))


def _seen_with(others: list[dict[str, Any]]) -> None:
    if not others:
        return
    st.subheader("Seen with")
    for c in others:
        st.button(
            f"{c['person_id']} · {c['same_keyframe']} keyframes together",
            key=f"with-{c['person_id']}",
            on_click=open_person,
            args=(c["person_id"],),
            type="tertiary",
        )


# -- changes: the service's verbs, then the re-clustered state ------------------------------------
def _actions(defs: Any, shown: dict[str, Any]) -> None:
    pid = shown["person_id"]
    st.divider()
    st.subheader("Change")
    name_col, merge_col = st.columns(2)
    with name_col:
        st.text_input("Name", value=shown["name"] or "", key=f"name-{pid}", placeholder="who this is")
        st.button("Save name", key="save-name", on_click=_name, args=(pid,))
    with merge_col:
        others = {p["person_id"]: _label(p) for p in people_service.list_people(defs, Paths.from_env(), refresh=False)}
        others.pop(pid, None)
        st.selectbox(
            "Merge another person into this one",
            list(others),
            index=None,
            format_func=lambda o: others[o] if others[o] == o else f"{others[o]} ({o})",
            key=f"merge-{pid}",
            placeholder="choose a person" if others else "no one else",
        )
        st.button("Merge", key="merge", on_click=_merge, args=(pid,), disabled=not others)
    faces = [(a["face_id"], f"{a['media']} at {mmss(a['t'])}") for a in shown["appearances"]]
    split_col, forget_col = st.columns(2)
    with split_col:
        labels = dict(faces)
        st.selectbox(
            "Split a face off into a person of its own",
            list(labels),
            index=None,
            format_func=lambda f: labels[f],
            key=f"split-{pid}",
            placeholder="choose a face",
        )
        st.button("Split off", key="split", on_click=_split, args=(pid,), disabled=len(faces) < 2)
    with forget_col:
        confirmed = st.checkbox(
            f"I understand that this deletes all {len(faces)} faces of {_label(shown)} from every media, for good",
            key=f"forget-ok-{pid}",
        )
        st.button("Forget this person", key="forget", on_click=_forget, args=(pid,), disabled=not confirmed)


def _run(what: str, verb: Any) -> bool:
    """Call a service verb; its refusal or failure becomes a message, never a traceback."""
    try:
        with st.spinner(f"{what} ..."):
            verb()
    except people_service.UnknownPerson as exc:
        _say("error", f"{what}: no person {exc.person_id!r} any more (merged, split off or forgotten?).")
    except (ValueError, RuntimeError, OSError) as exc:  # unknown face, merge into itself, a failed run
        _say("error", f"{what}: {exc}")
    else:
        return True
    return False


def _refresh() -> None:
    done: list[list[dict[str, Any]]] = []
    if _run("Re-clustering", lambda: done.append(people_service.list_people(_defs(), Paths.from_env()))):
        _say("success", f"Re-clustered the faces: {_count(len(done[0]), 'person')}.")


def _name(pid: str) -> None:
    name = str(st.session_state.get(f"name-{pid}", "")).strip()
    paths = Paths.from_env()
    if _run("Naming", lambda: people_service.name_person(_defs(), paths, pid, name or None)):
        _say("success", f"Named {pid} {name!r}." if name else f"{pid} has no name any more.")


def _merge(pid: str) -> None:
    other = st.session_state.get(f"merge-{pid}")
    if not other:
        _say("warning", "Choose the person to merge into this one first.")
        return
    if _run("Merging", lambda: people_service.merge_people(_defs(), Paths.from_env(), pid, str(other))):
        _say("success", f"Merged {other} into {pid}.")
        st.session_state.pop(f"merge-{pid}", None)


def _split(pid: str) -> None:
    face = st.session_state.get(f"split-{pid}")
    if not face:
        _say("warning", "Choose the face to split off first.")
        return
    if _run("Splitting", lambda: people_service.split_person(_defs(), Paths.from_env(), pid, str(face))):
        new = people_service.split_person_id(pid, str(face))
        _say("success", f"Split {face} off {pid}: it is person {new} now.")
        st.session_state.pop(f"split-{pid}", None)


def _forget(pid: str) -> None:
    if not st.session_state.get(f"forget-ok-{pid}"):
        _say("warning", "Tick the confirmation first: nothing was deleted.")
        return
    st.session_state.pop(f"forget-ok-{pid}", None)
    done: list[Any] = []
    if _run("Forgetting", lambda: done.append(people_service.forget(_defs(), Paths.from_env(), pid))):
        out = done[0]
        _say(
            "success",
            f"Forgot {pid}: {_count(out.face_rows, 'face row')}, {_count(out.vectors, 'vector')} and "
            f"{_count(out.runs_deleted, 'run')} deleted.",
        )
        open_page("people")


__all__ = ["render", "render_dossier"]
