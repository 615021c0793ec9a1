"""Where the UI is: the URL's query parameters are the only navigation state, so every screen is
a deep link people can paste (`/?q=QUERY`, `/?media=KEY&t=SECONDS`, `/?person=ID`, `/?page=NAME`)."""

from __future__ import annotations

import streamlit as st

PAGES = ("search", "library", "people", "review")  # the navigation bar's pages, in its order


def open_media(key: str, t: int) -> None:
    """Button callback: show `key` with the player at second `t` (the URL follows)."""
    st.query_params.from_dict({"media": key, "t": str(t)})


def open_search(query: str) -> None:
    """Button callback: back to the search, with the last query's results."""
    st.query_params.from_dict({"q": query} if query else {})


def open_person(person_id: str) -> None:
    """Button callback: one person's dossier."""
    st.query_params.from_dict({"person": person_id})


def open_page(page: str) -> None:
    """Button callback: a page of the navigation bar (search keeps the last query)."""
    if page == "search":
        open_search(str(st.session_state.get("q", "")))
    else:
        st.query_params.from_dict({"page": page})
