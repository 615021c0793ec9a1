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
    # the dossier: per media the appearances with what was said and shown around them, and a summary
    dossier = {m["key"]: m for m in detail["dossier"]["media"]}
    assert set(dossier) == set(keys.values())
    clip = dossier[keys["clip.webm"]]
    assert clip["source_name"] == "clip.webm" and clip["appearances"]
    assert "astronaut" in " ".join(s["text"] for s in clip["transcript"]).lower()  # "An astronaut, and then a cat."
    assert dossier[keys["astronaut.png"]]["transcript"] == []  # a photo: nothing said
    assert all(m["safety"]["verdict"] in {"safe", "review", "unsafe"} for m in dossier.values())
    summary = detail["dossier"]["summary"]
    assert summary["summary"] and summary["method"] == "extractive"  # the suite's settings: no LLM
    text = ml(cli_env, "people", "show", pid).stdout
    assert "said" in text and "Eileen" in text

    face = detail["appearances"][0]["face_id"]
    ids_before = {x["person_id"] for x in people(cli_env)}
    assert ml(cli_env, "people", "split", pid, face).returncode == 0
    after = {x["person_id"]: x for x in people(cli_env)}
    assert after[pid]["appearances"] == named["appearances"] - 1
    (split_off,) = set(after) - ids_before  # the split face is a person of its own
    assert after[split_off]["appearances"] == 1

    # merge puts it back: one person, the name and id of the first
    assert ml(cli_env, "people", "merge", pid, split_off).returncode == 0
    merged = {x["person_id"]: x for x in people(cli_env)}
    assert split_off not in merged and merged[pid]["appearances"] == named["appearances"]
    assert merged[pid]["name"] == "Eileen"
    assert ml(cli_env, "people", "show", "p-nobody").returncode == 1

    # a decision about a person that does not exist is refused before it reaches the decision log
    log = Path(cli_env["MEDIALENS_HOME"]) / "store" / "person_dossiers" / "decisions.jsonl"
    before = log.read_bytes()
    assert ml(cli_env, "people", "name", "p-nobody", "Ghost").returncode == 1
    refused = ml(cli_env, "people", "merge", pid, "p-nobody")
    assert refused.returncode == 1 and "p-nobody" in refused.stderr
    assert log.read_bytes() == before
