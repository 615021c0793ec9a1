"""`medialens forget media|person`: afterwards nothing of it can be found — not in files, Qdrant,
search, the inference cache (a real redis-server), the Dagster instance or the dossiers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.media_assets.test_cli import ml
from tests.redis_server import RedisServer


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def _json(env: dict[str, str], *args: str) -> dict:
    p = ml(env, *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _files_mentioning(root: Path, needle: str) -> list[str]:
    """Paths under root whose name or bytes contain `needle` (Qdrant's own storage is checked by
    scrolling it instead: deleted rows may linger in free database pages until it compacts)."""
    hits = []
    for p in root.rglob("*"):
        if "qdrant" in p.parts:
            continue
        if needle in p.name or (p.is_file() and needle.encode() in p.read_bytes()):
            hits.append(str(p.relative_to(root)))
    return hits


def _redis_keys(url: str) -> list[str]:
    import redis

    return [k.decode() for k in redis.Redis.from_url(url).scan_iter(match="medialens:*")]


def _payloads(env: dict[str, str], collection: str) -> list[dict]:
    from media_assets.config import Paths
    from resources import build_resources

    return build_resources(Paths.from_env(env), env={})["qdrant"].scroll_payloads(collection)


def _partitions(env: dict[str, str]) -> list[str]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        return list(instance.get_dynamic_partitions("media"))


@pytest.mark.slow
def test_forget_media_leaves_nothing_to_find(samples: dict[str, Path], cli_env: dict[str, str], redis_url: str) -> None:
    env = {**cli_env, "REDIS_URL": redis_url}
    # one command per file: each has runs of its own, which forget deletes (a run over several files
    # also holds the others' history: forget keeps it and says so in `notes`)
    keys = {
        r["source_name"]: r["key"]
        for f in (samples["speech.mp3"], samples["astronaut.png"])
        for r in _json(env, "analyse", str(f))["results"]
    }
    gone, kept = keys["speech.mp3"], keys["astronaut.png"]
    home = Path(env["MEDIALENS_HOME"])
    assert _files_mentioning(home, gone) and any(p["partition"] == gone for p in _payloads(env, "text"))
    cached = len(_redis_keys(redis_url))
    assert cached > 0 and [h for h in _json(env, "search", "harbour recording")["hits"] if h["key"] == gone]

    done = _json(env, "forget", "media", gone)
    assert done["what"] == "media" and done["vectors"] > 0 and done["cache_entries"] > 0 and done["runs_deleted"] >= 1
    assert done["notes"] == []  # no run of several media held it

    assert _files_mentioning(home, gone) == []  # original, audio, tables, manifests, summary, sources
    assert not any(p["partition"] == gone for c in ("text", "faces") for p in _payloads(env, c))
    assert not [h for h in _json(env, "search", "harbour recording")["hits"] if h["key"] == gone]
    assert ml(env, "show", gone, "--json").returncode == 1
    assert gone not in _partitions(env) and kept in _partitions(env)
    assert len(_redis_keys(redis_url)) == cached - done["cache_entries"]
    runs = ml(env, "stale", "--json")
    assert gone not in runs.stdout
    # the other media is untouched
    assert _json(env, "show", kept)["faces"] and any(p["partition"] == kept for p in _payloads(env, "text"))
    assert ml(env, "forget", "media", gone).returncode == 1  # nothing left to forget

    # two files analysed by one command share a run: forgetting one keeps that run and names it
    pair = {
        r["source_name"]: r["key"]
        for r in _json(env, "analyse", str(samples["chelsea.webp"]), str(samples["messi5.jpg"]))["results"]
    }
    shared = _json(env, "forget", "media", pair["chelsea.webp"])
    assert shared["runs_deleted"] == 0 and any("several media" in n for n in shared["notes"]), shared
    assert _files_mentioning(home, pair["chelsea.webp"]) == [] and pair["messi5.jpg"] in _partitions(env)


@pytest.mark.slow
def test_forget_person_removes_the_faces_and_keeps_them_out(
    samples: dict[str, Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    files = [samples["astronaut.png"], samples["clip.webm"], samples["messi5.jpg"]]
    keys = {r["source_name"]: r["key"] for r in _json(cli_env, "analyse", *map(str, files))["results"]}
    astro = _json(cli_env, "show", keys["astronaut.png"])["faces"][0]["person_id"]
    before = {p["person_id"]: p for p in _json(cli_env, "people")["persons"]}
    assert set(before[astro]["media"]) == {keys["astronaut.png"], keys["clip.webm"]}
    face_ids = {a["face_id"] for a in _json(cli_env, "people", "show", astro)["appearances"]}
    assert ml(cli_env, "people", "name", astro, "Eileen").returncode == 0

    done = _json(cli_env, "forget", "person", astro)
    assert done["face_rows"] == len(face_ids) and done["vectors"] == len(face_ids)

    after = {p["person_id"]: p for p in _json(cli_env, "people")["persons"]}
    assert astro not in after and set(after) == set(before) - {astro}  # the others keep their ids
    assert not {p["face_id"] for p in _payloads(cli_env, "faces")} & face_ids
    shown = _json(cli_env, "show", keys["astronaut.png"])
    assert shown["faces"] == [] and shown["summary"] is not None  # the media stays, the face goes
    assert not {f["face_id"] for f in _json(cli_env, "show", keys["clip.webm"])["faces"]} & face_ids
    home = Path(cli_env["MEDIALENS_HOME"])
    assert _files_mentioning(home, "Eileen") == []  # the name is nowhere, not even in old dossier runs
    assert "Eileen" not in ml(cli_env, "people").stdout

    # the same face again (same pixels, different bytes: a new media) stays forgotten
    again = tmp_path / "astronaut-again.png"
    Image.open(samples["astronaut.png"]).save(again, compress_level=1)
    shutil.copystat(samples["astronaut.png"], again)
    new = _json(cli_env, "analyse", str(again))["results"][0]["key"]
    assert new != keys["astronaut.png"]
    assert _json(cli_env, "show", new)["faces"] == []
    assert {p["person_id"] for p in _json(cli_env, "people")["persons"]} == set(after)
    assert ml(cli_env, "forget", "person", astro).returncode == 1
