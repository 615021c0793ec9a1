"""Person dossiers through the CLI: the same face across media is one person whose name survives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.media_assets.test_cli import ml


def people(env: dict[str, str]) -> list[dict]:
    p = ml(env, "people", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["persons"]


@pytest.mark.slow
def test_astronaut_across_media_keeps_the_name_the_user_gives(
    samples: dict[str, Path], cli_env: dict[str, str]
) -> None:
    p = ml(cli_env, "analyse", str(samples["astronaut.png"]), str(samples["clip.webm"]), "--json")
    assert p.returncode == 0, p.stderr
    keys = {r["source_name"]: r["key"] for r in json.loads(p.stdout)["results"]}
    persons = people(cli_env)
    astronaut = [x for x in persons if keys["astronaut.png"] in x["media"]]
    assert len(astronaut) == 1 and set(astronaut[0]["media"]) == set(keys.values()), persons
    pid = astronaut[0]["person_id"]
    assert astronaut[0]["name"] is None  # anonymous until the user names it

    assert ml(cli_env, "people", "name", pid, "Eileen").returncode == 0
    more = ml(cli_env, "analyse", str(samples["messi5.jpg"]), "--json")  # re-clusters with new faces
    assert more.returncode == 0, more.stderr
    named = next(x for x in people(cli_env) if x["person_id"] == pid)
    assert named["name"] == "Eileen" and set(named["media"]) == set(keys.values())

    show = json.loads(ml(cli_env, "show", keys["astronaut.png"], "--json").stdout)
    assert {f["person_id"] for f in show["faces"]} == {pid}
    detail = json.loads(ml(cli_env, "people", "show", pid, "--json").stdout)
    assert len(detail["appearances"]) == named["appearances"] >= 2

    face = detail["appearances"][0]["face_id"]
    assert ml(cli_env, "people", "split", pid, face).returncode == 0
    after = {x["person_id"]: x for x in people(cli_env)}
    assert after[pid]["appearances"] == named["appearances"] - 1
    assert ml(cli_env, "people", "show", "p-nobody").returncode == 1
