"""The contract with scripts (docs/contract.md): every `--json` shape of the real `medialens` CLI.

Generated media (a talk video with speech and slides, a video with a face and speech, an audio file,
a photo with a face, a copy of that photo under another name, and one file that must be rejected)
are analysed once for the module, through the installed entry point in a subprocess, as a script
would; each test then checks one group of commands with the same steps `tests/contract_check.py`
(the `make contract` script) runs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import contract_shapes as cs
from tests.conftest import TEST_SETTINGS

MEDIALENS = Path(sys.executable).parent / "medialens"
FILES = ("talk.mp4", "clip.webm", "speech.mp3", "astronaut.png")


# Tests on `analysed` are slow: one analyse of five files for the module takes a minute or two on 2 cores.
@pytest.fixture(scope="module")
def analysed(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[cs.Session]:
    """A home where FILES, a copy of the photo and a text file named `notes.jpg` were analysed by one
    `analyse --json`."""
    work = tmp_path_factory.mktemp("contract")
    bad = work / "notes.jpg"
    bad.write_text("not a picture, only text\n")
    copy = work / "astronaut copy.png"  # the same bytes under another name: the same key, no new analysis
    shutil.copyfile(samples["astronaut.png"], copy)
    session = cs.make_session(str(MEDIALENS), work, config_text=TEST_SETTINGS)
    cs.check_analyse(session, [*(samples[n] for n in FILES), bad, copy])
    yield session


@pytest.mark.slow
def test_analyse_json(analysed: cs.Session) -> None:
    assert analysed.analyse_errors == []
    status = {r["source_name"]: r["status"] for r in analysed.results}
    assert status == {**dict.fromkeys(FILES, "ok"), "notes.jpg": "rejected", "astronaut copy.png": "ok"}
    by_name = {r["source_name"]: r for r in analysed.results}
    kinds = {name: r["kind"] for name, r in by_name.items()}
    assert kinds == {"talk.mp4": "video", "clip.webm": "video", "speech.mp3": "audio", "astronaut.png": "image",
                     "notes.jpg": None, "astronaut copy.png": "image"}  # fmt: skip
    assert by_name["notes.jpg"]["key"] is None and "notes.jpg" in by_name["notes.jpg"]["reason"]
    copy = by_name["astronaut copy.png"]
    assert copy["key"] == by_name["astronaut.png"]["key"] and "same bytes" in copy["reason"]
    assert by_name["talk.mp4"]["keyframes"] >= 4 and by_name["speech.mp3"]["keyframes"] in (0, None)


@pytest.mark.slow
def test_show_json(analysed: cs.Session) -> None:
    assert cs.check_show(analysed) == []


@pytest.mark.slow
def test_search_json(analysed: cs.Session) -> None:
    assert cs.check_search(analysed) == []


@pytest.mark.slow
def test_people_json(analysed: cs.Session) -> None:
    assert cs.check_people(analysed) == []
    # the astronaut is in the photo and in clip.webm: at least one person, named now
    assert analysed.persons, "no person found in astronaut.png and clip.webm"


@pytest.mark.slow
def test_stale_and_reanalyse_json(analysed: cs.Session) -> None:
    assert cs.check_stale_and_reanalyse(analysed) == []


@pytest.mark.slow
def test_review_json(analysed: cs.Session) -> None:
    assert cs.check_review(analysed) == []


@pytest.mark.slow
def test_forget_json(analysed: cs.Session) -> None:
    """Last: it deletes a person and a media file from the module's library."""
    assert cs.check_forget(analysed) == []


def test_shapes_checker_reports_what_differs() -> None:
    """The checker itself: missing keys, nulls, wrong types and enum values are each named by path."""
    good = {"key": "a-0123456789", "source": "ocr", "start": None, "end": None, "text": "x", "score": 0.5}
    assert cs.check({"hits": [good], "counts": {"ocr": 1}}, cs.SEARCH) == []
    bad = {**good, "score": True, "source": "video"}
    del bad["text"]
    errs = cs.check({"hits": [bad], "counts": {"ocr": 1}}, cs.SEARCH, "search")
    assert sorted(errs) == sorted(
        [
            "search.hits[0].source: 'video' is not one of 'transcript', 'ocr', 'tags', 'summary', 'image'",
            "search.hits[0].text: missing (absent values must be null, never missing keys)",
            "search.hits[0].score: want number, got bool",
        ]
    )
    assert cs.check({"stale": None}, cs.STALE, "stale") == ["stale.stale: null where the contract wants a list"]
    assert cs.check({"v": {"a": "x", "b": 1}}, {"v": cs.MapOf(cs.STR)}) == ["$.v.b: want str, got int"]
