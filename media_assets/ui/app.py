"""The results UI's entry point (`medialens ui` runs `streamlit run` on this file).

Routing is by query parameters rather than Streamlit pages, so that the links people share are
plain URLs: `/?q=QUERY` opens the Search page with its results, `/?media=KEY&t=SECONDS` a media
file with its player at that second.
"""

from __future__ import annotations

import streamlit as st

from media_assets.ui import media_page, search_page
from media_assets.ui.text import parse_second


def main() -> None:
    st.set_page_config(page_title="medialens", layout="wide")
    key = st.query_params.get("media")
    if not key:
        search_page.render()
        return
    try:
        t = parse_second(st.query_params.get("t"))
    except ValueError:
        st.warning(f"Ignoring t={st.query_params.get('t')!r}: not a number of seconds; starting at 0.")
        t = 0
    media_page.render(key, t)


main()
