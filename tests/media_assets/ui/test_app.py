"""The results UI through Streamlit's AppTest, in-process, against a home analysed by the real CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from media_assets.ui import search_page as search_page_module
from media_assets.ui.text import highlight, link_second, mmss, nearest_keyframe, parse_second
from tests.media_assets.test_cli import MEDIALENS, analysed_home
from tests.media_assets.ui.apptest import run_app


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """talk.mp4 (slides, speech), speech.mp3 (spoken harbour news) and clip.webm (an astronaut's face,
    then a cat), analysed once."""
    files = [samples["talk.mp4"], samples["speech.mp3"], samples["clip.webm"]]
    return analysed_home(tmp_path_factory.mktemp("ui"), files)


def app(**params: str) -> AppTest:
    return run_app(**params)


def video_start(at: AppTest) -> list[int]:
    """AppTest has no typed `st.video` element: its proto is reachable as an unknown element."""
    return [v.proto.start_time for v in at.get("video")]


@pytest.mark.slow
def test_search_deep_link_finds_the_slide_and_opens_it_at_that_second(home: dict[str, str]) -> None:
    at = app(q="crane offline")
    assert not at.exception and not at.error
    rows = [m.value for m in at.markdown]
    hit = rows.index(next(r for r in rows if r.startswith("**talk\\.mp4** · text on screen · ")))
    assert rows[hit + 1] == "**Crane** **offline** at pier 4"  # the snippet, query words in bold
    assert any(c.value.startswith("Moments considered: ") and "text on screen " in c.value for c in at.caption)
    assert at.image and all(i.proto.imgs[0].url for i in at.image), "the talk's hits show a keyframe"
    # the first hit is the slide; its button opens the media page at its second (the URL too)
    first = rows[0]
    assert first.startswith("**talk\\.mp4** · text on screen · 0:0"), first
    at.button(key="hit0").click().run()
    t = int(at.query_params["t"])
    assert at.query_params["media"] == home["talk.mp4"]
    assert 4 <= t <= 8, at.query_params
    assert video_start(at) == [t]
    assert [x.value for x in at.title] == ["Crane offline at pier 4"]


@pytest.mark.slow
def test_media_deep_link_starts_the_player_there(home: dict[str, str]) -> None:
    at = app(media=home["talk.mp4"], t="12")
    assert not at.exception and not at.error
    assert video_start(at) == [12]
    assert [m.label for m in at.metric] == ["Safety", "Faces", "Duration"]
    assert [m.value for m in at.metric] == ["safe", "0", "0:24"]  # slide text is no face
    labels = [b.label for b in at.button]
    assert "0:00" in labels and "0:11" in labels  # transcript segments and OCR lines, each a link
    assert any(m.value == "Crane offline at pier 4" for m in at.markdown)  # an OCR line
    # a segment's time reloads the page with the player there
    seg = next(b for b in at.button if b.key and b.key.startswith("seg") and b.label != "0:00")
    seg.click().run()
    assert video_start(at) == [parse_second(str(at.query_params["t"]))]
    assert video_start(at) != [12]


@pytest.mark.slow
def test_media_page_has_a_keyframe_timeline_and_links_to_dagster(home: dict[str, str]) -> None:
    key = home["talk.mp4"]
    at = app(media=key)
    assert not at.exception and not at.error
    heads = [h.value for h in at.subheader]
    timeline = next(h for h in heads if h.startswith("Keyframes ("))
    frames = [b for b in at.button if b.key and b.key.startswith("kf")]
    assert frames and timeline == f"Keyframes ({len(frames)})"
    facts = [m.value for m in at.markdown]
    assert not any(f.startswith("**Faces:**") for f in facts), "slides have no faces"
    assert any("**Tags:**" in f for f in facts)
    # a keyframe's time seeks the player
    frames[-1].click().run()
    assert video_start(at) == [int(at.query_params["t"])] and int(at.query_params["t"]) > 0
    assert "Analyses" in heads
    links = next(m.value for m in at.markdown if "/assets/ocr_text?view=partitions&partition=" in m.value)
    assert f"partition={key}" in links and "version `" in links and " · current" in links

    clip = app(media=home["clip.webm"])  # the astronaut's face on the timeline, captioned by its person
    assert not clip.exception and not clip.error
    assert any(m.value.startswith("**Faces:**") for m in clip.markdown), "the clip's face is on the timeline"
    captions = [img.caption for i in clip.image for img in i.proto.imgs]
    # each face has its thumbnail, captioned by its person (one face, one media: a person of its own)
    assert any(c.startswith("p-") for c in captions) and "unassigned" not in captions, captions


@pytest.mark.slow
def test_audio_deep_link_and_back_to_the_search(home: dict[str, str]) -> None:
    at = app(q="harbour")
    at.button(key="hit0").click().run()
    assert at.query_params["media"] == home["speech.mp3"]
    assert [a.proto.start_time for a in at.get("audio")] == [int(at.query_params["t"])]
    assert not at.get("video") and at.metric[0].value == "n/a"  # audio: no visual analyses
    at.button(key="back").click().run()
    assert dict(at.query_params) == {"q": "harbour"}
    assert at.text_input(key="q").value == "harbour" and at.button(key="hit0")


@pytest.mark.slow
def test_unknown_key_and_bad_time(home: dict[str, str]) -> None:
    at = app(media="nope-0000000000")
    assert [e.value for e in at.error] == [
        "No media with key 'nope-0000000000'. It may have been forgotten, or the link is mistyped."
    ]
    at = app(media=home["talk.mp4"], t="soon")
    assert "not a number of seconds" in at.warning[0].value and video_start(at) == [0]


def test_empty_query_hint_and_search_errors_are_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No traceback for the user: a locked embedded Qdrant or a bad filter is one line."""
    monkeypatch.setenv("MEDIALENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    at = app()
    assert at.info[0].value.startswith("Type what was said or shown")
    assert not at.error
    at = app(q="crane")  # the filters are checked before anything is searched
    at.number_input(key="f_from").set_value(9.0).run()
    at.number_input(key="f_to").set_value(3.0).run()
    assert [e.value for e in at.error] == ["search: --from 9 is after --to 3"]

    def locked(*args: object, **kwargs: object) -> None:
        raise TimeoutError("embedded Qdrant at /x is locked by pid 42 (medialens analyse) for 120 s")

    monkeypatch.setattr(search_page_module, "search_moments", locked)
    at = app(q="crane")
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Search is unavailable right now: embedded Qdrant at /x is locked by pid 42 (medialens analyse) for 120 s"
    ]


def test_highlight_bolds_query_words_and_escapes_the_rest() -> None:
    assert highlight("Crane offline at pier 4", "crane OFFLINE") == "**Crane** **offline** at pier 4"
    assert highlight("Cranes were offline.", "crane") == "**Cranes** were offline\\."  # a word it starts
    assert highlight("scrane", "crane") == "scrane"  # not inside another word
    assert highlight("costs $5 *now*", "now") == "costs \\$5 \\***now**\\*"  # data, not markup
    assert highlight("Übermaß schöne", "übermaß") == "**Übermaß** schöne"
    assert highlight("pier 4 and 44", "4") == "pier **4** and **44**"
    assert highlight("a text", "   ") == "a text"


def test_times_and_keyframes() -> None:
    assert [mmss(None), mmss(5.96), mmss(65), mmss(3725)] == ["-", "0:05", "1:05", "1:02:05"]
    assert [link_second(None), link_second(5.96), link_second(-1.0)] == [0, 5, 0]  # heard: from before the words
    assert [link_second(5.96, seen=True), link_second(6.0, seen=True), link_second(None, seen=True)] == [6, 6, 0]
    assert [parse_second(None), parse_second("12"), parse_second("12.7")] == [0, 12, 12]
    for bad in ("soon", "-3", "nan", "inf"):
        with pytest.raises(ValueError):
            parse_second(bad)
    frames = [{"t": 0.0, "path": "a"}, {"t": 4.0, "path": "b"}, {"t": 8.0, "path": "c"}]
    assert nearest_keyframe(frames, 5.9) == frames[1] and nearest_keyframe(frames, None) == frames[0]
    assert nearest_keyframe(None, 3.0) is None and nearest_keyframe([], 3.0) is None


def test_cli_loads_streamlit_only_for_ui() -> None:
    """`medialens search` and friends must not pay for importing Streamlit."""
    code = "import sys, media_assets.cli as c; c.build_parser(); print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_medialens_ui_serves_the_app(cli_env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(MEDIALENS), "ui", "--port", str(port)], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    assert r.read() == b"ok"
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "streamlit did not answer in 90 s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out  # SIGTERM: medialens passes it on and returns Streamlit's exit code
