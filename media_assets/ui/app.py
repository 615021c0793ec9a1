"""The results UI's entry point (`medialens ui` runs `streamlit run` on this file).

Routing is by query parameters rather than Streamlit pages, so that the links people share are
plain URLs: `/?q=QUERY` opens the Search page with its results, `/?media=KEY&t=SECONDS` a media
file with its player at that second, `/?person=ID` a person's dossier, `/?page=library|people|review`
the other pages.
"""

from __future__ import annotations

import streamlit as st

from media_assets.ui import library_page, media_page, people_page, review_page, search_page
from media_assets.ui.state import PAGES, open_page
from media_assets.ui.text import parse_second


def _current_page() -> str:
    if st.query_params.get("media"):
        return "media"
    if st.query_params.get("person"):
        return "people"
    page = st.query_params.get("page", "search")
    return page if page in PAGES else "search"


def _navigation(current: str) -> None:
    for col, page in zip(st.columns(len(PAGES) + 4), PAGES, strict=False):
        with col:
            col.button(
                page.capitalize(),
                key=f"nav-{page}",
                on_click=open_page,
                args=(page,),
                type="primary" if page == current else "tertiary",
            )


def main() -> None:
    st.set_page_config(page_title="medialens", layout="wide")
    current = _current_page()
    _navigation(current)
    if current == "media":
        try:
            t = parse_second(st.query_params.get("t"))
        except ValueError:
            st.warning(f"Ignoring t={st.query_params.get('t')!r}: not a number of seconds; starting at 0.")
            t = 0
        media_page.render(str(st.query_params["media"]), t)
    elif current == "people":
        person = st.query_params.get("person")
        if person:
            people_page.render_dossier(str(person))
        else:
            people_page.render()
    elif current == "review":
        review_page.render()
    elif current == "library":
        library_page.render()
    else:
        search_page.render()


main()
