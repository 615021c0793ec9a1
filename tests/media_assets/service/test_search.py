"""Search over what was analysed: spoken words, slide text and tags, through the real graph and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_SETTINGS
from tests.media_assets.test_cli import analysed_home, ml


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """talk.mp4 (slides), speech.mp3 (spoken harbour news) and chelsea.webp (a cat), analysed once."""
    files = [samples[n] for n in ("talk.mp4", "speech.mp3", "chelsea.webp")]
    return analysed_home(tmp_path_factory.mktemp("search"), files)


def hits(env: dict[str, str], *args: str) -> list[dict]:
    p = ml(env, "search", *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["hits"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "media", "source", "near_t"),
    [
        ("a short recording about the harbour", "speech.mp3", "transcript", 0.0),
        ("crane offline at pier 4", "talk.mp4", "ocr", 6.0),
        ("quarterly results", "talk.mp4", "ocr", 0.0),
        ("safety first, wear helmets", "talk.mp4", "ocr", None),
        ("tabby cat", "chelsea.webp", "tags", None),
    ],
)
def test_queries_find_the_right_media_and_moment(
    analysed: tuple[dict[str, str], dict[str, str]], query: str, media: str, source: str, near_t: float | None
) -> None:
    env, keys = analysed
    found = hits(env, query, "--limit", "5")
    # a media's summary may match as well as the moment it was drawn from: it must be the same media
    assert all(h["key"] == keys[media] for h in found if h["source"] == "summary" and h["score"] >= found[0]["score"])
    best = next(h for h in found if h["source"] != "summary")
    assert (best["key"], best["source"]) == (keys[media], source), (query, best)
    if near_t is not None:
        assert best["start"] is not None and abs(best["start"] - near_t) <= 2.0, best


@pytest.mark.slow
def test_filters_and_bad_queries(analysed: tuple[dict[str, str], dict[str, str]]) -> None:
    env, keys = analysed
    only_tags = hits(env, "harbour crane", "--kind", "tags")
    assert only_tags and all(h["source"] == "tags" for h in only_tags)
    one_media = hits(env, "cat", "--media", keys["talk.mp4"])
    assert one_media and {h["key"] for h in one_media} == {keys["talk.mp4"]}
    assert len(hits(env, "harbour", "--limit", "2")) <= 2
    empty = ml(env, "search", "   ", "--json")
    assert empty.returncode == 2 and "empty" in empty.stderr
    # the media's kind and spoken language, time spans, a person, and the counts beside the hits
    audio = hits(env, "harbour", "--media-kind", "audio")
    assert audio and {h["key"] for h in audio} == {keys["speech.mp3"]}
    english = hits(env, "harbour", "--language", "en")
    assert english and keys["chelsea.webp"] not in {h["key"] for h in english}  # an image speaks no language
    early = hits(env, "crane offline", "--media", keys["talk.mp4"], "--kind", "ocr", "--to", "1")
    late = hits(env, "crane offline", "--media", keys["talk.mp4"], "--kind", "ocr", "--from", "5")
    assert all(h["start"] <= 1 for h in early) and all(h["end"] >= 5 for h in late) and late
    unknown = ml(env, "search", "harbour", "--person", "p-0000000000", "--json")
    assert unknown.returncode == 1 and "p-0000000000" in unknown.stderr
    backwards = ml(env, "search", "harbour", "--from", "9", "--to", "1", "--json")
    assert backwards.returncode == 2 and "after" in backwards.stderr
    full = json.loads(ml(env, "search", "harbour", "--limit", "3", "--json").stdout)
    assert set(full) == {"hits", "counts"} and sum(full["counts"].values()) >= len(full["hits"])


@pytest.mark.slow
def test_reanalysis_replaces_points_instead_of_adding(
    samples: dict[str, Path], analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    from media_assets.plumbing.config import Paths
    from resources import build_resources

    env, keys = analysed
    qdrant = build_resources(Paths.from_env(env), env={})["qdrant"]
    before = qdrant.count("text", partition=keys["talk.mp4"])
    assert before > 0
    config = Path(env["MEDIALENS_HOME"]) / "medialens.yaml"
    config.write_text(TEST_SETTINGS + "search_index: {denoise_numbers: true}\n")  # a new version of the index only
    try:
        stale = json.loads(ml(env, "stale", "--json").stdout)["stale"]
        assert {s["asset"] for s in stale} == {"search_index"}
        p = ml(env, "analyse", str(samples["talk.mp4"]), "--json")
        assert p.returncode == 0, p.stderr
    finally:
        config.write_text(TEST_SETTINGS)
    payloads = [pl for pl in qdrant.scroll_payloads("text") if pl["partition"] == keys["talk.mp4"]]
    assert len(payloads) == before and len({pl["model_version"] for pl in payloads}) == 1


@pytest.mark.slow
def test_summaries_are_shown_and_searchable(analysed: tuple[dict[str, str], dict[str, str]]) -> None:
    env, keys = analysed
    shown = {name: json.loads(ml(env, "show", key, "--json").stdout)["summary"] for name, key in keys.items()}
    for name, s in shown.items():
        assert s["title"] and s["summary"] and isinstance(s["topics"], list), (name, s)
        assert s["method"] == "extractive", s  # the suite's settings: no LLM
    assert shown["speech.mp3"]["language"] == "en"
    said = (shown["speech.mp3"]["summary"] + shown["speech.mp3"]["title"]).lower()
    assert "harbour" in said or "harbor" in said, said  # Whisper may spell it either way
    # a slide's title line, not page chrome or a transcript fragment
    assert shown["talk.mp4"]["title"] in {"Quarterly results", "Crane offline at pier 4", "Safety first: wear helmets"}
    assert shown["chelsea.webp"]["summary"].startswith("An image")  # no text at all: from its tags
    best = hits(env, "harbour recording", "--kind", "summary")[0]
    assert (best["key"], best["source"], best["start"]) == (keys["speech.mp3"], "summary", None)
