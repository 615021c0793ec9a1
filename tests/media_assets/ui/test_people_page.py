"""The People page through Streamlit's AppTest against a home analysed by the real CLI: the grid,
a dossier's moments, and changes that go through the same service (and log) as `medialens people`.

The tests share one home and run in file order: naming, then a split, then forgetting what was
split off; each one reads what it expects from the service rather than assuming the order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from media_assets.plumbing.config import Paths
from media_assets.service import people as ps
from tests.media_assets.test_cli import analysed_home, ml
from tests.media_assets.ui.apptest import run_app


@pytest.fixture(scope="module")
def analysed(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, str], dict[str, str]]:
    """The astronaut in three media (the photo, the clip, the photo again as a JPEG), analysed once."""
    base = tmp_path_factory.mktemp("people-ui")
    again = base / "astronaut_again.jpg"
    with Image.open(samples["astronaut.png"]) as img:
        img.convert("RGB").save(again, quality=90)
    return analysed_home(base, [samples["astronaut.png"], samples["clip.webm"], again])


def app(**params: str) -> AppTest:
    return run_app(**params)


def people() -> list[dict[str, Any]]:
    """The persons as the service (and so `medialens people --json`) has them now."""
    paths = Paths.from_env()
    return ps.list_people(ps.definitions_for(paths), paths, refresh=False)


def astronaut() -> dict[str, Any]:
    return max(people(), key=lambda p: p["appearances"])


def messages(at: AppTest) -> dict[str, list[str]]:
    return {kind: [m.value for m in getattr(at, kind)] for kind in ("success", "warning", "error")}


@pytest.mark.slow
def test_grid_shows_each_person_with_a_face_and_opens_the_dossier(home: dict[str, str]) -> None:
    at = app(page="people")
    assert not at.exception and not at.error
    (person,) = people()
    pid = person["person_id"]
    assert person["appearances"] == 3 and set(person["media"]) == set(home.values())
    assert at.button(key=f"person-{pid}").label == (person["name"] or pid)
    assert "3 appearances · 3 media" in [c.value for c in at.caption]
    assert [i.proto.imgs[0].url for i in at.image] and len(at.image) == 1  # the person's face
    at.button(key="people_refresh").click().run()  # what the upload sensor analysed joins the grid
    assert messages(at)["success"] == ["Re-clustered the faces: 1 person."]
    at.button(key=f"person-{pid}").click().run()
    assert dict(at.query_params) == {"person": pid}
    assert [m.label for m in at.metric] == ["Appearances", "Media", "Seen with"]


@pytest.mark.slow
def test_dossier_deep_link_seeks_to_each_appearance(home: dict[str, str]) -> None:
    person = astronaut()
    pid = person["person_id"]
    paths = Paths.from_env()
    shown = ps.dossier(ps.definitions_for(paths), paths, pid, refresh=False)
    at = app(person=pid)
    assert not at.exception and not at.error
    assert [m.value for m in at.metric] == [str(person["appearances"]), str(len(person["media"])), "0"]
    keys = [m["key"] for m in shown["dossier"]["media"]]
    assert set(keys) == set(person["media"])
    assert at.image  # its face beside the name
    # the clip: where the astronaut is seen, and what is said then ("An astronaut, and then a cat.")
    clip = keys.index(home["clip.webm"])
    assert any("astronaut" in m.value.lower() for m in at.markdown if m.value.startswith("said"))
    at.button(key=f"app-{clip}-0").click().run()
    assert dict(at.query_params) == {"media": home["clip.webm"], "t": "0"}


@pytest.mark.slow
def test_naming_in_the_ui_is_what_the_cli_shows(
    home: dict[str, str], analysed: tuple[dict[str, str], dict[str, str]]
) -> None:
    pid = astronaut()["person_id"]
    at = app(person=pid)
    at.text_input(key=f"name-{pid}").input("Eileen").run()
    at.button(key="save-name").click().run()
    assert not at.exception and messages(at)["success"] == [f"Named {pid} 'Eileen'."]
    assert [t.value for t in at.title] == ["Eileen"]
    assert {p["person_id"]: p["name"] for p in people()}[pid] == "Eileen"
    cli = ml(analysed[0], "people", "--json")
    assert cli.returncode == 0, cli.stderr
    assert {p["person_id"]: p["name"] for p in json.loads(cli.stdout)["persons"]}[pid] == "Eileen"


@pytest.mark.slow
def test_a_split_face_is_a_person_the_filter_hides(home: dict[str, str]) -> None:
    before = astronaut()
    pid = before["person_id"]
    paths = Paths.from_env()
    apps = ps.dossier(ps.definitions_for(paths), paths, pid, refresh=False)["appearances"]
    face = next(a["face_id"] for a in apps if a["media"] == home["astronaut_again.jpg"])
    at = app(person=pid)
    split = at.selectbox(key=f"split-{pid}")
    assert f"{home['astronaut_again.jpg']} at 0:00" in split.options  # each face by where it is seen
    split.set_value(face).run()
    at.button(key="split").click().run()
    new = ps.split_person_id(pid, face)
    assert not at.exception and messages(at)["success"] == [f"Split {face} off {pid}: it is person {new} now."]
    after = {p["person_id"]: p for p in people()}
    assert after[new]["appearances"] == 1 and after[pid]["appearances"] == before["appearances"] - 1 >= 2

    grid = app(page="people")
    assert {b.key for b in grid.button} >= {f"person-{pid}", f"person-{new}"}
    grid.checkbox(key="people_hide_once").check().run()
    shown = {b.key for b in grid.button if b.key and b.key.startswith("person-")}
    assert shown == {f"person-{p}" for p, row in after.items() if row["appearances"] > 1}
    assert f"person-{pid}" in shown and f"person-{new}" not in shown


@pytest.mark.slow
def test_forget_asks_for_confirmation_first(home: dict[str, str]) -> None:
    once = [p for p in people() if p["appearances"] == 1]
    if not once:  # run on its own: split one face off to forget
        pid = astronaut()["person_id"]
        paths = Paths.from_env()
        defs = ps.definitions_for(paths)
        face = ps.dossier(defs, paths, pid, refresh=False)["appearances"][-1]["face_id"]
        ps.split_person(defs, paths, pid, face)
        once = [p for p in people() if p["appearances"] == 1]
    target = once[0]["person_id"]
    at = app(person=target)
    assert at.button(key="forget").disabled  # nothing to click before the confirmation
    assert target in {p["person_id"] for p in people()}
    at.checkbox(key=f"forget-ok-{target}").check().run()
    assert not at.button(key="forget").disabled
    at.button(key="forget").click().run()
    assert not at.exception and messages(at)["error"] == []
    assert dict(at.query_params) == {"page": "people"}
    assert messages(at)["success"][0].startswith(f"Forgot {target}: 1 face row, ")
    assert target not in {p["person_id"] for p in people()}
    assert f"person-{target}" not in {b.key for b in at.button}


@pytest.mark.slow
def test_unknown_person_is_a_message(home: dict[str, str]) -> None:
    at = app(person="p-nobody")
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No person with id 'p-nobody'. It may have been merged, split off or forgotten, or the link is mistyped."
    ]
