"""What the AppTest modules share: the app pointed at an analysed home, run with query parameters."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from media_assets.ui import APP

# A first run loads the text embedder or the code location, and a change re-clusters (a Dagster
# run): the CI machine is slow and busy.
TIMEOUT = 180


def point_at(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest runs the app in this process: its environment is the analysed home's."""
    for name in ("MEDIALENS_HOME", "DAGSTER_HOME"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("QDRANT_URL", raising=False)


def run_app(**params: str) -> AppTest:
    """The whole app (its routing included) opened at `/?params`, after its first run."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    return at.run()
