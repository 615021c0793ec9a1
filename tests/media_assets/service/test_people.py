"""The People verbs (service/people.py) on a home analysed by the real CLI: what the UI changes
is what `medialens people --json` shows, and what neither knows is refused before the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from media_assets.plumbing.config import Paths
from media_assets.plumbing.people_log import decisions_path
from media_assets.service import people as ps
from tests.media_assets.test_cli import analysed_home, ml

Home = tuple[Paths, Any, dict[str, str]]


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """astronaut.png and clip.webm (the same face), messi5.jpg (a 32 px face: too small to be anyone),
    talk.mp4 (slides: no face), once."""
    files = [samples["astronaut.png"], samples["clip.webm"], samples["talk.mp4"], samples["messi5.jpg"]]
    return analysed_home(tmp_path_factory.mktemp("people"), files)


@pytest.fixture
def home(analysed: tuple[dict[str, str], dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    """Paths, definitions and media keys of the analysed home, in this process's environment."""
    env, keys = analysed
    for name in ("MEDIALENS_HOME", "DAGSTER_HOME"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("QDRANT_URL", raising=False)
    paths = Paths.from_env()
    yield paths, ps.definitions_for(paths), keys


@pytest.mark.slow
def test_list_name_and_the_cli_agree(home: Home, analysed: tuple[dict[str, str], dict[str, str]]) -> None:
    paths, defs, keys = home
    people = ps.list_people(defs, paths)
    # one person across the photo and the clip; messi5's face is below the quality floors ("small":
    # under 40 px), so it is in no person (one-off faces would be persons of their own)
    (astronaut,) = people
    assert set(astronaut) == {"person_id", "name", "media", "appearances"}
    assert set(astronaut["media"]) == {keys["astronaut.png"], keys["clip.webm"]} and astronaut["appearances"] == 2
    assert astronaut["name"] is None
    assert ps.unassigned_faces(defs) == {"small": 1}
    pid = astronaut["person_id"]

    after = ps.name_person(defs, paths, pid, "Eileen")
    assert [p["name"] for p in after if p["person_id"] == pid] == ["Eileen"]
    assert ps.list_people(defs, paths, refresh=False) == after
    cli = ml(analysed[0], "people", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["persons"] == after  # the CLI prints what the service returns

    shown = ps.dossier(defs, paths, pid)
    cli_show = ml(analysed[0], "people", "show", pid, "--json")
    assert json.loads(cli_show.stdout) == json.loads(json.dumps(shown))
    assert shown["name"] == "Eileen" and len(shown["appearances"]) == 2
    assert {m["key"] for m in shown["dossier"]["media"]} == {keys["astronaut.png"], keys["clip.webm"]}

    # the representative face as a picture for the grid
    face = ps.representatives(defs)[pid]
    thumb = ps.face_thumbnail(defs.resources["store"], face)
    assert thumb is not None
    with Image.open(BytesIO(thumb)) as img:
        assert img.format == "JPEG" and max(img.size) <= ps.THUMBNAIL_PX


@pytest.mark.slow
def test_unknown_ids_are_refused_before_the_log(home: Home) -> None:
    paths, defs, _ = home
    pid = ps.list_people(defs, paths, refresh=False)[0]["person_id"]
    log = decisions_path(defs.resources["store"])
    before = log.read_bytes() if log.exists() else b""
    with pytest.raises(ps.UnknownPerson, match="p-nobody"):
        ps.name_person(defs, paths, "p-nobody", "Ghost")
    with pytest.raises(ps.UnknownPerson, match="p-nobody"):
        ps.merge_people(defs, paths, pid, "p-nobody")
    with pytest.raises(ps.UnknownFace, match="nope/0/0"):
        ps.split_person(defs, paths, pid, "nope/0/0")
    with pytest.raises(ValueError, match="itself"):
        ps.merge_people(defs, paths, pid, pid)
    with pytest.raises(ps.UnknownPerson, match="p-nobody"):
        ps.dossier(defs, paths, "p-nobody", refresh=False)
    with pytest.raises(ps.UnknownPerson):
        ps.forget(defs, paths, "p-nobody")
    assert (log.read_bytes() if log.exists() else b"") == before
    assert ps.face_thumbnail(defs.resources["store"], "not-a-face") is None
