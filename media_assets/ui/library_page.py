"""The Library page: every media with its kind, length, status and staleness, and an upload form.

The rows come from `service/library.py` (`library`), the uploads go through its `upload`, the same
functions a CLI calls: files land in the inbox, whole, and the upload sensor does the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import streamlit as st

from media_assets.plumbing.config import Paths
from media_assets.service.library import ACCEPTED_TYPES, KINDS, STATUSES, Readable, UploadRefused, totals, upload
from media_assets.ui.state import open_media
from media_assets.ui.text import escape_markdown, mmss

ANY = "any"
NOTICE = "library_notice"  # session key: [(kind, text)] of the last upload, shown once on the next run
UPLOADS = "library_uploads"  # session key: bumps to give the uploader a new key (empties it)
CACHE_S = 30  # the library is listed again at most this often (or on Refresh, or after an upload)


class NamedFile(Readable, Protocol):
    """What `st.file_uploader` gives per file (and what tests pass): a name and the bytes."""

    name: str


@st.cache_data(ttl=CACHE_S, show_spinner="Reading the library ...", max_entries=4)
def _rows(store_root: str, dagster_home: str) -> list[dict[str, Any]]:
    """The library of this store and instance (both in the key: tests switch homes in one process)."""
    from media_assets.service.headless import dagster_instance
    from media_assets.service.library import library
    from resources.store import MediaStore

    with dagster_instance(Paths.from_env()) as instance:
        return library(MediaStore(root=store_root), instance)


def render() -> None:
    """Totals, filters, the table with a way to open a media, and the upload form."""
    st.title("Library")
    for kind, text in st.session_state.pop(NOTICE, []):
        getattr(st, kind)(text)
    paths = Paths.from_env()
    try:
        rows = _rows(str(paths.store), os.environ.get("DAGSTER_HOME", ""))
    except OSError as exc:  # the store or the instance unreadable (a removed disk, permissions)
        st.error(f"Cannot read the library: {exc}")
        rows = []
    _totals(rows)
    shown = _filtered(rows)
    if rows:
        _table(shown)
    else:
        st.info("The library is empty: add files below, or drop them into the inbox.")
    _upload_form(paths)


def _totals(rows: list[dict[str, Any]]) -> None:
    t = totals(rows)
    cols = st.columns(5)
    cols[0].metric("Media", t["media"])
    cols[1].metric("Duration", mmss(t["hours"] * 3600) if t["hours"] else "0:00")
    cols[2].metric("Analysed", t["by_status"]["analysed"])
    cols[3].metric("Failed", t["by_status"]["failed"])
    cols[4].metric("Stale", t["stale"])
    kinds = " · ".join(f"{k} {n}" for k, n in t["by_kind"].items() if n)
    waiting = t["by_status"]["registered-not-ingested"] + t["by_status"]["analysing"]
    if kinds or waiting:
        st.caption(kinds + (f" · {waiting} waiting to be analysed" if waiting else ""))


def _filtered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    left, mid, right, refresh = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    kind = left.selectbox("Kind", [ANY, *KINDS], key="lib_kind")
    status = mid.selectbox("Status", [ANY, *STATUSES], key="lib_status")
    only_stale = right.checkbox("Only stale", key="lib_stale", help="analysed with an older version of some asset")
    if refresh.button("Refresh", key="lib_refresh"):
        _rows.clear()
        st.rerun()
    return filter_rows(rows, None if kind == ANY else kind, None if status == ANY else status, only_stale)


def filter_rows(
    rows: Iterable[dict[str, Any]], kind: str | None, status: str | None, only_stale: bool
) -> list[dict[str, Any]]:
    """The rows of that kind and status (None: any), only those with stale assets if asked."""
    return [
        r
        for r in rows
        if (kind is None or r["kind"] == kind)
        and (status is None or r["status"] == status)
        and (not only_stale or r["stale_assets"])
    ]


def table_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The table as people read it: durations as m:ss, lists joined, times to the minute (UTC)."""
    return [
        {
            "Name": r["source_name"] or r["key"],
            "Kind": r["kind"] or "-",
            "Duration": mmss(r["duration_s"]),
            "Status": r["status"],
            "Stale assets": ", ".join(r["stale_assets"]),
            "Added": datetime.fromtimestamp(r["added_ts"], UTC).strftime("%Y-%m-%d %H:%M") if r["added_ts"] else "-",
            "Key": r["key"],
        }
        for r in rows
    ]


def _table(shown: list[dict[str, Any]]) -> None:
    st.dataframe(table_rows(shown), hide_index=True, width="stretch")
    if not shown:
        st.caption("No media match these filters.")
        return
    labels = {r["key"]: f"{r['source_name'] or r['key']} ({r['key']})" for r in shown}
    pick, go = st.columns([5, 1], vertical_alignment="bottom")
    key = pick.selectbox("Open a media", list(labels), format_func=labels.__getitem__, key="lib_open")
    go.button("Open", key="lib_open_button", on_click=open_media, args=(key, 0), type="primary")
    failed = [r for r in shown if r["status"] == "failed"]
    if failed:
        with st.expander(f"Why {len(failed)} failed"):
            for r in failed:
                reason = r["reason"] or f"{', '.join(r['failed_assets'])} failed (see the run in the Dagster UI)"
                st.markdown(f"**{escape_markdown(labels[r['key']])}**: {escape_markdown(reason)}")


# -- upload -------------------------------------------------------------------------------------------
def _upload_form(paths: Paths) -> None:
    st.subheader("Add media")
    n = st.session_state.setdefault(UPLOADS, 0)
    st.file_uploader(
        f"Video, audio or image files: {ACCEPTED_TYPES}",
        accept_multiple_files=True,
        key=f"lib_upload_{n}",
    )
    st.button("Add to the inbox", key="lib_upload_button", on_click=_on_upload, args=(paths, f"lib_upload_{n}"))


def _on_upload(paths: Paths, widget: str) -> None:
    """Button callback: the chosen files into the inbox; the outcome is shown on the next run."""
    files = st.session_state.get(widget) or []
    if not files:
        st.session_state[NOTICE] = [("warning", "Choose one or more files first.")]
        return
    st.session_state[NOTICE] = add_to_inbox(paths, files)
    st.session_state[UPLOADS] = st.session_state.get(UPLOADS, 0) + 1  # a fresh, empty uploader
    _rows.clear()


def add_to_inbox(paths: Paths, files: Sequence[NamedFile]) -> list[tuple[str, str]]:
    """Upload each file through the service; what to tell the user, as (streamlit call, text)."""
    added: list[str] = []
    out: list[tuple[str, str]] = []
    for f in files:
        try:
            added.append(upload(paths, f.name, f).name)
        except UploadRefused as exc:
            out.append(("error", escape_markdown(f"Not added: {exc}")))
        except OSError as exc:  # a full disk, an inbox we may not write to
            out.append(("error", escape_markdown(f"Not added: {f.name}: {exc}")))
    if added:
        what = "1 file" if len(added) == 1 else f"{len(added)} files"
        out.insert(
            0,
            (
                "success",
                f"{what} added to the inbox ({escape_markdown(', '.join(added))}) — the sensor will analyse them "
                f"when `make dev`/the daemon runs; or run `medialens analyse {paths.inbox}`",
            ),
        )
    return out
