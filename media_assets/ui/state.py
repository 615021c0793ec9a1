"""Where the UI is: the URL's query parameters are the only navigation state, so every screen is
a deep link people can paste (`/?q=QUERY`, `/?media=KEY&t=SECONDS`)."""

from __future__ import annotations

import streamlit as st


def open_media(key: str, t: int) -> None:
    """Button callback: show `key` with the player at second `t` (the URL follows)."""
    st.query_params.from_dict({"media": key, "t": str(t)})


def open_search(query: str) -> None:
    """Button callback: back to the search, with the last query's results."""
    st.query_params.from_dict({"q": query} if query else {})
