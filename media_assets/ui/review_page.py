"""The Review page: media whose safety verdict calls for a person, with the keyframes that were
flagged, and Approve / Reject / Note per media (media_assets/service/review.py; runs no model).

A decision is appended to the review log; the media then leaves the queue (a note keeps it there,
shown) and appears under "Decided". Every widget key carries the media key, so a decision always
lands on the media whose buttons were pressed, however the queue changed meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.ui.state import open_media
from media_assets.ui.text import escape_markdown, link_second, mmss

FLASH = "review-flash"  # the last decision's message, shown once after the rerun
ACTIONS = {"approve": "approved", "reject": "rejected", "note": "noted"}
MAX_FRAMES = 12  # keyframes shown per media; the media page has the rest


def _store() -> Any:
    from resources.store import MediaStore

    return MediaStore(root=str(Paths.from_env().store))


def _decide(key: str, name: str, decision: str) -> None:
    """Button callback: record `decision` with the note typed for this media."""
    from media_assets.service import review

    note = str(st.session_state.get(f"rv-note-{key}") or "")
    try:
        review.decide(_store(), key, decision, note)
    except (review.UnknownMedia, review.NotReviewable, review.BadDecision) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        st.session_state[FLASH] = ("error", f"{name}: not recorded: {message}")
        return
    except OSError as exc:  # a full or unwritable store
        st.session_state[FLASH] = ("error", f"{name}: not recorded, the store cannot be written: {exc}")
        return
    st.session_state[f"rv-note-{key}"] = ""
    st.session_state[FLASH] = ("success", f"{name}: {ACTIONS[decision]}.")


def render() -> None:
    from media_assets.service import review

    st.title("Safety review")
    st.caption(
        "Media whose safety verdict is review or unsafe. The verdict is an aid from an automatic detector, "
        "never a finding: look at the flagged keyframes and decide. Decisions are kept in an append-only log "
        "and hold across re-analysis while the verdict stays the same."
    )
    flash = st.session_state.pop(FLASH, None)
    if flash:
        (st.success if flash[0] == "success" else st.error)(flash[1])
    store = _store()
    try:
        items = review.queue(store)
        done = review.decided(store)
    except (OSError, ValueError) as exc:  # an unreadable store, a damaged decision log
        st.error(f"Cannot read the review queue: {exc}")
        return
    if not items:
        st.info("Nothing to review: no media with a review or unsafe verdict is waiting for a decision.")
    for item in items:
        _item(item)
    st.header("Decided")
    if not done:
        st.caption("No decisions yet.")
    for d in done:
        note = f" — {escape_markdown(d['note'])}" if d.get("note") else ""
        st.markdown(
            f"**{escape_markdown(d['source_name'])}** · {d['decision']} · verdict {d['verdict']} · {d['at']}{note}"
        )


def _item(item: dict[str, Any]) -> None:
    """One media of the queue: what was flagged, the keyframes, and the decision controls."""
    key, name = item["key"], item["source_name"]
    with st.container(border=True):
        st.subheader(f"{escape_markdown(name)} · {item['verdict']}")
        st.caption(key)
        for reason in item["reasons"]:
            st.markdown(f"- {escape_markdown(reason)}")
        if item.get("review"):
            st.info(f"Note ({item['review']['at']}): {escape_markdown(item['review']['note'])}")
        frames = item["keyframes"][:MAX_FRAMES]
        for row in range(0, len(frames), 4):
            for col, (j, kf) in zip(st.columns(4), enumerate(frames[row : row + 4], row), strict=False):
                with col:
                    _keyframe(key, j, kf)
        if len(item["keyframes"]) > MAX_FRAMES:
            more = len(item["keyframes"]) - MAX_FRAMES
            st.caption(f"… and {more} more flagged keyframes: open the media to see them")
        st.text_input("Note", key=f"rv-note-{key}", placeholder="why (optional; required for Add note)")
        approve, reject, note = st.columns(3)
        approve.button("Approve", key=f"rv-approve-{key}", on_click=_decide, args=(key, name, "approve"))
        reject.button("Reject", key=f"rv-reject-{key}", on_click=_decide, args=(key, name, "reject"))
        note.button("Add note", key=f"rv-addnote-{key}", on_click=_decide, args=(key, name, "note"))


def _keyframe(key: str, j: int, kf: dict[str, Any]) -> None:
    """A flagged keyframe with its labels, and a button that opens the media at that second."""
    labels = ", ".join(f"{lb['label']} {lb['score']:.2f}" for lb in kf["labels"]) or "no labels"
    if kf.get("path") and Path(kf["path"]).is_file():
        st.image(kf["path"], caption=labels)
    else:
        st.caption(labels)
    second = link_second(kf["t"], seen=True)
    st.button(
        f"Open at {mmss(second)}",
        key=f"rv-open-{key}-{j}",
        on_click=open_media,
        args=(key, second),
        type="tertiary",
    )
