"""The safety review queue and its decision log, on media the real NudeNet model flags.

A colour wheel is the detector's measured false positive (a lone BUTTOCKS_EXPOSED filling the
image, tests/media_assets/analysis/test_safety.py): the real analysis calls it "review", which is
exactly what a person must then look at. Three variants of it (different bytes: three media), a
photo that is "safe" and an audio file without visual analyses are analysed once for the module
through the real CLI; each test decides on a media of its own.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from media_assets.plumbing import review_log
from media_assets.plumbing.review_log import ReviewDecision, applicable
from media_assets.service import review
from media_assets.service.show import show
from resources.store import MediaStore
from tests.conftest import TEST_SETTINGS
from tests.media_assets.test_cli import analysed_home, ml

WHEELS = ("wheel.png", "wheel-flipped.png", "wheel-turned.png")


def flagged_images(folder: Path) -> dict[str, Path]:
    """Three colour wheels (plain, mirrored, turned): real images the real safety model flags for review."""
    wheel = skimage.data.colorwheel()
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, img in zip(WHEELS, (wheel, np.fliplr(wheel), np.rot90(wheel)), strict=True):
        Image.fromarray(np.ascontiguousarray(img)).save(folder / name)
        out[name] = folder / name
    return out


Home = tuple[dict[str, str], dict[str, str]]


@pytest.fixture(scope="module")
def analysed(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Home:
    base = tmp_path_factory.mktemp("review")
    wheels = flagged_images(base / "images")
    return analysed_home(base, [*wheels.values(), samples["astronaut.png"], samples["speech.mp3"]])


def store_of(env: dict[str, str]) -> MediaStore:
    return MediaStore(root=str(Path(env["MEDIALENS_HOME"]) / "store"))


def cli_json(env: dict[str, str], *args: str) -> dict:
    p = ml(env, *args, "--json")
    assert p.returncode == 0, p.stderr
    out: dict = json.loads(p.stdout)
    return out


def in_queue(store: MediaStore) -> list[str]:
    return [item["key"] for item in review.queue(store)]


# -- which decision applies (pure: records in, answer out) ------------------------------------------
def rec(decision: str, verdict: str, note: str | None = None, key: str = "m-1", at: str = "t") -> ReviewDecision:
    return ReviewDecision(key, decision, note, at, verdict, "1-abc")


def test_which_decision_applies() -> None:
    assert applicable([], "m-1", "review") is None
    assert applicable([rec("approve", "review")], "m-1", None) is None  # no safety result: nothing applies
    assert applicable([rec("approve", "review")], "m-2", "review") is None  # another media's
    assert applicable([rec("approve", "review", at="a")], "m-1", "review") == {
        "decision": "approve",
        "at": "a",
        "note": None,
    }
    # a note alone does not decide; the latest note is shown
    notes = [rec("note", "review", "first", at="a"), rec("note", "review", "second", at="b")]
    assert applicable(notes, "m-1", "review") == {"decision": "note", "at": "b", "note": "second"}
    # a note written before approving explains the approval; the latest decision wins
    seq = [rec("note", "review", "a wheel", at="a"), rec("reject", "review", at="b"), rec("approve", "review", at="c")]
    assert applicable(seq, "m-1", "review") == {"decision": "approve", "at": "c", "note": "a wheel"}
    # a decision made on another verdict does not apply, nor do notes about that verdict
    assert applicable([rec("approve", "review", "fine")], "m-1", "unsafe") is None
    later = [rec("approve", "review", "fine"), rec("note", "unsafe", "worse now", at="d")]
    assert applicable(later, "m-1", "unsafe") == {"decision": "note", "at": "d", "note": "worse now"}
    # the latest approve/reject counts, even when an older one was made on today's verdict
    flip = [rec("approve", "review"), rec("reject", "unsafe")]
    assert applicable(flip, "m-1", "review") is None


def test_records_are_validated(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    with pytest.raises(ValueError, match="refusing to append an invalid review decision: decision 'maybe'"):
        review_log.append(store, rec("maybe", "review"))
    with pytest.raises(ValueError, match="key '../x' is not a media key"):
        review_log.append(store, rec("approve", "review", key="../x"))
    assert review_log.load(store) == []


# -- on analysed media -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_queue_holds_the_flagged_media_with_keyframes_and_labels(analysed: Home) -> None:
    env, keys = analysed
    store = store_of(env)
    verdicts = {name: (show(store, key)["safety"] or {}).get("verdict") for name, key in keys.items()}
    assert verdicts == {**dict.fromkeys(WHEELS, "review"), "astronaut.png": "safe", "speech.mp3": None}
    items = {i["key"]: i for i in review.queue(store)}
    assert set(items) >= {keys[w] for w in WHEELS} and keys["astronaut.png"] not in items
    item = items[keys["wheel.png"]]
    assert item["source_name"] == "wheel.png" and item["verdict"] == "review" and item["review"] is None
    assert item["reasons"] and "BUTTOCKS_EXPOSED" in item["reasons"][0]
    (kf,) = item["keyframes"]  # an image: one keyframe, the flagged one
    assert kf["t"] == 0.0 and Path(kf["path"]).is_file()
    assert [lb["label"] for lb in kf["labels"]] == ["BUTTOCKS_EXPOSED"] and kf["labels"][0]["score"] > 0.6
    assert item["safety_version"] == show(store, keys["wheel.png"])["versions"]["safety"]
    # the CLI lists the same queue
    listed = cli_json(env, "review")["queue"]
    assert [i["key"] for i in listed] == [i["key"] for i in review.queue(store)]
    assert show(store, keys["wheel.png"])["safety"]["review"] is None


@pytest.mark.slow
def test_decisions_that_are_refused_write_nothing(analysed: Home) -> None:
    env, keys = analysed
    store = store_of(env)
    before = review_log.load(store)
    with pytest.raises(review.UnknownMedia):
        review.decide(store, "nothing-0123456789", "approve")
    with pytest.raises(review.UnknownMedia):
        review.decide(store, "../manifests", "approve")
    with pytest.raises(review.NotReviewable, match=r"verdict is 'safe': nothing to review"):
        review.decide(store, keys["astronaut.png"], "approve")
    with pytest.raises(review.NotReviewable, match="no safety result to review .*audio only"):
        review.decide(store, keys["speech.mp3"], "reject")
    with pytest.raises(review.BadDecision, match="'maybe' is not one of approve, reject, note"):
        review.decide(store, keys["wheel.png"], "maybe")
    with pytest.raises(review.BadDecision, match="a note needs its text"):
        review.decide(store, keys["wheel.png"], "note", "   ")
    assert review_log.load(store) == before
    # the CLI: exit 1 for media it cannot decide on, 2 for a wrong command, each with a message
    p = ml(env, "review", "nothing-0123456789", "approve")
    assert p.returncode == 1 and "no media with key 'nothing-0123456789'" in p.stderr
    p = ml(env, "review", keys["astronaut.png"], "reject")
    assert p.returncode == 1 and "nothing to review" in p.stderr
    assert ml(env, "review", keys["wheel.png"]).returncode == 2
    assert ml(env, "review", keys["wheel.png"], "maybe").returncode == 2
    assert ml(env, "review", keys["wheel.png"], "note").returncode == 2
    assert review_log.load(store) == before


@pytest.mark.slow
def test_note_keeps_it_queued_approve_takes_it_out(analysed: Home) -> None:
    env, keys = analysed
    store, key = store_of(env), keys["wheel-flipped.png"]
    assert key in in_queue(store)
    noted = cli_json(env, "review", key, "note", "--note", "a colour wheel, mirrored")
    assert noted["recorded"]["decision"] == "note" and noted["recorded"]["verdict"] == "review"
    assert noted["review"]["decision"] == "note"
    item = next(i for i in review.queue(store) if i["key"] == key)  # still waiting, showing the note
    assert item["review"]["note"] == "a colour wheel, mirrored"
    assert show(store, key)["safety"]["review"]["decision"] == "note"

    length = len(review.queue(store))
    done = cli_json(env, "review", key, "approve")
    at = done["recorded"]["at"]
    assert at.endswith("+00:00") and done["recorded"]["safety_version"] == show(store, key)["versions"]["safety"]
    assert key not in in_queue(store) and len(review.queue(store)) == length - 1
    assert show(store, key)["safety"]["review"] == {"decision": "approve", "at": at, "note": "a colour wheel, mirrored"}
    assert review.review_of(store, key) == show(store, key)["safety"]["review"]
    assert any(d["key"] == key and d["decision"] == "approve" for d in review.decided(store))
    # a later change of mind: the latest decision holds
    review.decide(store, key, "reject", "on second thoughts")
    assert show(store, key)["safety"]["review"]["decision"] == "reject"
    assert show(store, key)["safety"]["review"]["note"] == "on second thoughts"
    assert key not in in_queue(store)


@pytest.mark.slow
def test_a_decision_holds_across_reanalysis_until_the_verdict_changes(analysed: Home) -> None:
    env, keys = analysed
    store, key = store_of(env), keys["wheel.png"]
    wheel = Path(show(store, key)["media"]["path"])
    config = Path(env["MEDIALENS_HOME"]) / "medialens.yaml"

    def reanalyse(safety: str) -> dict:
        config.write_text(TEST_SETTINGS + safety)
        (result,) = cli_json(env, "analyse", str(wheel))["results"]
        assert result["status"] == "ok", result
        return show(store, key)

    review.decide(store, key, "approve", "a colour wheel")
    first = show(store, key)
    try:
        # another setting, the same verdict: re-analysed (a new safety version), still decided
        same = reanalyse("safety:\n  max_reasons: 9\n")
        assert same["versions"]["safety"] != first["versions"]["safety"]
        assert same["safety"]["verdict"] == "review"
        assert same["safety"]["review"] == first["safety"]["review"] and key not in in_queue(store)

        # a lone exposed label now counts as unsafe: a different verdict, back in the queue
        worse = reanalyse("safety:\n  unsafe_needs_corroboration: false\n")
        assert worse["safety"]["verdict"] == "unsafe" and worse["safety"]["review"] is None
        item = next(i for i in review.queue(store) if i["key"] == key)
        assert item["verdict"] == "unsafe" and item["review"] is None
        review.decide(store, key, "reject")
        assert key not in in_queue(store)
    finally:
        config.write_text(TEST_SETTINGS)
        back = reanalyse("")
    # "review" again: the latest decision was made on "unsafe", so a person must look again
    assert back["safety"]["verdict"] == "review" and back["safety"]["review"] is None
    assert key in in_queue(store)
    # every record kept what the reviewer saw
    mine = [d for d in review_log.load(store) if d.key == key]
    assert [(d.decision, d.verdict) for d in mine] == [("approve", "review"), ("reject", "unsafe")]
    assert mine[0].safety_version == first["versions"]["safety"] != mine[1].safety_version


@pytest.mark.slow
def test_forget_media_removes_its_decisions_even_when_killed_first(analysed: Home) -> None:
    env, keys = analysed
    store, key, other = store_of(env), keys["wheel-turned.png"], keys["wheel-flipped.png"]
    review.decide(store, key, "note", "turned wheel")
    review.decide(store, key, "reject")
    review.decide(store, other, "note", "kept: another media")
    log = review_log.decisions_path(store)
    assert key in log.read_text()

    # killed after the source step, before the decisions step: its decisions are still there ...
    killed = ml({**env, "MEDIALENS_FAULT": "forget:media.source"}, "forget", "media", key, "--json")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert key in log.read_text()
    # ... and the rerun finishes the forget from its journal, decisions included
    done = cli_json(env, "forget", "media", key)
    assert "2 safety review decision(s) about it removed" in done["notes"], done["notes"]
    assert key not in log.read_text() and key not in in_queue(store)
    assert any(d.key == other and d.note == "kept: another media" for d in review_log.load(store))
    assert ml(env, "review", key, "approve").returncode == 1  # nothing left to decide on
