"""The results UI (`medialens ui`): a Streamlit app for people who search and review.

This package's modules other than `app.py`/the pages import no Streamlit, so the CLI can find the
app (`APP`) without loading it; `medialens ui` runs `streamlit run APP` in a child process.
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).with_name("app.py")
