"""The UI tests' shared fixture: each module's `analysed` home, pointed at for AppTest."""

from __future__ import annotations

import pytest

from tests.media_assets.ui.apptest import point_at


@pytest.fixture
def home(analysed: tuple[dict[str, str], dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """AppTest runs the app in this process: point it at the module's analysed home; the media keys."""
    env, keys = analysed
    point_at(env, monkeypatch)
    return keys
