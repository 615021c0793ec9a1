"""The Review page (`/?page=review`) through Streamlit's AppTest, against a home where the real CLI
analysed two colour wheels (the safety model's real false positive: verdict "review") and a photo
that is "safe"."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from media_assets.service import review
from media_assets.service.show import show
from resources.store import MediaStore
from tests.media_assets.service.test_review import flagged_images
from tests.media_assets.test_cli import analysed_home
from tests.media_assets.ui.apptest import run_app

Home = tuple[dict[str, str], dict[str, str]]


@pytest.fixture(scope="module")
def analysed(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Home:
    base = tmp_path_factory.mktemp("review-ui")
    wheels = flagged_images(base / "images")
    return analysed_home(base, [wheels["wheel.png"], wheels["wheel-flipped.png"], samples["astronaut.png"]])


def store() -> MediaStore:
    from media_assets.plumbing.config import Paths

    return MediaStore(root=str(Paths.from_env().store))


def review_page() -> AppTest:
    return run_app(page="review")


def headings(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader]


def test_an_empty_library_has_nothing_to_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIALENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    at = review_page()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Safety review"]
    assert at.info[0].value.startswith("Nothing to review")
    assert "No decisions yet." in [c.value for c in at.caption]


@pytest.mark.slow
def test_the_queue_shows_flagged_keyframes_and_opens_the_media_there(home: dict[str, str]) -> None:
    at = review_page()
    assert not at.exception and not at.error
    assert sorted(headings(at)) == ["wheel\\-flipped\\.png · review", "wheel\\.png · review"]
    assert any("BUTTOCKS\\_EXPOSED" in m.value for m in at.markdown)  # the reason
    assert len(at.image) == 2 and all(i.proto.imgs[0].url for i in at.image)  # one keyframe each
    assert [i.proto.imgs[0].caption for i in at.image] == [
        f"BUTTOCKS_EXPOSED {lb['score']:.2f}" for item in review.queue(store()) for lb in item["keyframes"][0]["labels"]
    ]
    key = home["wheel.png"]
    at.button(key=f"rv-open-{key}-0").click().run()
    assert dict(at.query_params) == {"media": key, "t": "0"}
    assert [m.value for m in at.metric][0] == "review"  # the media page, with its verdict


@pytest.mark.slow
def test_approve_reject_and_note_from_the_page(home: dict[str, str]) -> None:
    plain, flipped = home["wheel.png"], home["wheel-flipped.png"]
    at = review_page()
    assert len(headings(at)) == 2

    # a note without text is refused with a message, and nothing is recorded
    at.button(key=f"rv-addnote-{flipped}").click().run()
    assert [e.value for e in at.error] == ["wheel-flipped.png: not recorded: a note needs its text (--note TEXT)"]
    assert review.review_of(store(), flipped) is None
    # a note keeps the media in the queue and shows it
    at.text_input(key=f"rv-note-{flipped}").input("looks like a colour wheel").run()
    at.button(key=f"rv-addnote-{flipped}").click().run()
    assert [s.value for s in at.success] == ["wheel-flipped.png: noted."]
    assert len(headings(at)) == 2
    assert any(i.value.endswith("looks like a colour wheel") for i in at.info)

    # approving with a note: the media leaves the queue, `show` has the decision, "Decided" lists it
    at.text_input(key=f"rv-note-{plain}").input("a colour wheel").run()
    at.button(key=f"rv-approve-{plain}").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["wheel.png: approved."]
    assert headings(at) == ["wheel\\-flipped\\.png · review"]
    decision = show(store(), plain)["safety"]["review"]
    assert decision["decision"] == "approve" and decision["note"] == "a colour wheel"
    decided = [m.value for m in at.markdown if m.value.startswith("**wheel")]
    assert decided == [f"**wheel\\.png** · approve · verdict review · {decision['at']} — a colour wheel"]

    # rejecting the other: the queue is empty, both are decided (newest first); the message shows once
    at.button(key=f"rv-reject-{flipped}").click().run()
    assert [s.value for s in at.success] == ["wheel-flipped.png: rejected."]
    assert headings(at) == [] and at.info[0].value.startswith("Nothing to review")
    assert show(store(), flipped)["safety"]["review"] == {
        "decision": "reject",
        "at": review.review_of(store(), flipped)["at"],  # type: ignore[index]
        "note": "looks like a colour wheel",
    }
    decided = [m.value for m in at.markdown if m.value.startswith("**wheel")]
    assert [d.split(" · ")[:2] for d in decided] == [
        ["**wheel\\-flipped\\.png**", "reject"],
        ["**wheel\\.png**", "approve"],
    ]
    at.run()
    assert not at.success  # the message was for the decision, not for every rerun
