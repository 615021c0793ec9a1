"""The Library page through Streamlit's AppTest, against a home analysed by the real CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from media_assets.plumbing.config import Paths
from media_assets.ui.library_page import add_to_inbox, filter_rows, table_rows
from sensors.inbox import list_inbox
from tests.media_assets.test_cli import analysed_home
from tests.media_assets.ui.apptest import TIMEOUT, point_at

# The Library page alone, routed as app.py routes `/?page=library` (the page is all this test is about).
SCRIPT = "from media_assets.ui import library_page\nlibrary_page.render()\n"


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """messi5.jpg (a photo) and speech.mp3 (spoken harbour news), analysed once."""
    return analysed_home(tmp_path_factory.mktemp("library_ui"), [samples["messi5.jpg"], samples["speech.mp3"]])


@pytest.fixture
def home(
    analysed: tuple[dict[str, str], dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """AppTest runs the page in this process: point it at the analysed home, with an inbox of this
    test's own; the media keys."""
    env, keys = analysed
    point_at(env, monkeypatch)
    monkeypatch.setenv("MEDIALENS_INBOX", str(tmp_path / "inbox"))
    return keys


def page() -> AppTest:
    return AppTest.from_string(SCRIPT, default_timeout=TIMEOUT).run()


@pytest.mark.slow
def test_the_table_lists_the_media_and_opens_one(home: dict[str, str]) -> None:
    at = page()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert list(metrics) == ["Media", "Duration", "Analysed", "Failed", "Stale"]
    assert (metrics["Media"], metrics["Analysed"], metrics["Failed"], metrics["Stale"]) == ("2", "2", "0", "0")
    assert metrics["Duration"].startswith("0:")  # the spoken news; the photo has no length
    table = at.dataframe[0].value
    assert list(table.columns) == ["Name", "Kind", "Duration", "Status", "Stale assets", "Added", "Key"]
    by_name = {r["Name"]: r for r in table.to_dict("records")}
    assert set(by_name) == {"messi5.jpg", "speech.mp3"}
    assert (by_name["messi5.jpg"]["Kind"], by_name["messi5.jpg"]["Duration"]) == ("image", "-")
    assert by_name["speech.mp3"]["Kind"] == "audio" and by_name["speech.mp3"]["Duration"].startswith("0:")
    assert {r["Status"] for r in by_name.values()} == {"analysed"}
    assert {r["Key"] for r in by_name.values()} == set(home.values())

    at.selectbox(key="lib_kind").set_value("audio").run()
    assert list(at.dataframe[0].value["Name"]) == ["speech.mp3"]
    at.button(key="lib_open_button").click().run()
    assert dict(at.query_params) == {"media": home["speech.mp3"], "t": "0"}


@pytest.mark.slow
def test_only_stale_and_failed_filters_leave_nothing_here(home: dict[str, str]) -> None:
    at = page()
    at.checkbox(key="lib_stale").check().run()
    assert at.dataframe[0].value.empty and any("No media match" in c.value for c in at.caption)
    at.checkbox(key="lib_stale").uncheck()
    at.selectbox(key="lib_status").set_value("failed").run()
    assert at.dataframe[0].value.empty


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), "navy").save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.slow
def test_upload_form_puts_files_into_the_inbox(home: dict[str, str]) -> None:
    inbox = Paths.from_env().inbox
    at = page()
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    uploader.set_value([("harbour.jpg", jpeg(), "image/jpeg"), ("notes.txt", b"crane offline\n", "text/plain")])
    at.button(key="lib_upload_button").click().run()
    assert not at.exception
    (ok,) = [s.value for s in at.success]
    assert ok.startswith("1 file added to the inbox (harbour\\.jpg) — the sensor will analyse them")
    assert "`make dev`" in ok and f"`medialens analyse {inbox}`" in ok
    (refused,) = [e.value for e in at.error]
    assert "notes\\.txt" in refused and "not a media file" in refused
    assert [c.rel for c in list_inbox(inbox)] == ["harbour.jpg"]  # whole, and nothing else
    assert (inbox / "harbour.jpg").read_bytes() == jpeg()
    assert not at.file_uploader[0].value  # a fresh, empty uploader for the next files

    at.file_uploader[0].set_value(("harbour.jpg", jpeg(), "image/jpeg"))
    at.button(key="lib_upload_button").click().run()
    (again,) = [s.value for s in at.success]
    assert again.startswith("1 file added to the inbox (harbour \\(2\\)\\.jpg)"), again
    assert sorted(c.rel for c in list_inbox(inbox)) == ["harbour (2).jpg", "harbour.jpg"]


def test_add_to_inbox_and_table_helpers(paths: Paths) -> None:
    class Named(io.BytesIO):
        name = "photo.jpg"

    notices = add_to_inbox(paths, [Named(jpeg())])
    assert [k for k, _ in notices] == ["success"] and (paths.inbox / "photo.jpg").exists()
    rows = [
        {
            "key": "a-0123456789",
            "source_name": "a.mp4",
            "kind": "video",
            "duration_s": 3725.0,
            "status": "analysed",
            "stale_assets": ["ocr_text"],
            "added_ts": 0.0,
        },
        {
            "key": "b-0123456789",
            "source_name": None,
            "kind": None,
            "duration_s": None,
            "status": "registered-not-ingested",
            "stale_assets": [],
            "added_ts": 1.7e9,
        },
    ]
    assert [r["key"] for r in filter_rows(rows, None, None, True)] == ["a-0123456789"]
    assert [r["key"] for r in filter_rows(rows, None, "registered-not-ingested", False)] == ["b-0123456789"]
    assert filter_rows(rows, "audio", None, False) == []
    a, b = table_rows(rows)
    assert (a["Duration"], a["Stale assets"], a["Added"]) == ("1:02:05", "ocr_text", "-")
    assert (b["Name"], b["Kind"], b["Duration"], b["Added"]) == ("b-0123456789", "-", "-", "2023-11-14 22:13")
