"""`medialens forget media|person`: afterwards nothing of it can be found — not in files, Qdrant,
search, the inference cache (a real redis-server), the Dagster instance or the dossiers — even when
the forget was killed at any step and run again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from media_assets.service.forget import JOURNAL_DIR, MEDIA_STEPS, PERSON_STEPS, RESUMED_NOTE
from resources.inference_cache import file_digest
from resources.store import MediaStore
from tests.conftest import TEST_SETTINGS
from tests.media_assets.test_cli import ROOT, ml
from tests.redis_server import REDIS_SERVER, RedisServer


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
    from media_assets.plumbing.config import Paths
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


# -- crash safety: killed at any step, a rerun finishes the forget -------------------------------------
# One library is analysed per module (analysis is the slow part) and copied back into the same fixed
# folder for each case: manifests, parquet tables and dagster.yaml hold absolute paths, so the copy
# must live where the original did. DAGSTER_HOME is sqlite files and embedded Qdrant is files too, so
# a copy taken while no process has them open is a faithful snapshot; Redis is dumped and restored.

RESUME_SCRIPT = """
import json
from media_assets.cli import _load_defs
from media_assets.plumbing.config import Paths
from media_assets.service.forget import resume_unfinished
from media_assets.service.headless import dagster_instance, refresh_people

paths = Paths.from_env()
defs = _load_defs()
res = defs.resources
done = resume_unfinished(
    dagster_instance(paths), res["store"], res["qdrant"],
    res["inference_cache"].process_config_and_initialize(), lambda: refresh_people(defs, paths),
)
print(json.dumps([d.as_dict() for d in done]))
"""


@dataclass
class Library:
    """An analysed library (clip.webm and astronaut.png, each by its own command) with snapshots."""

    work: Path
    env: dict[str, str]
    redis_url: str
    redis_dump: dict[Any, tuple[int, Any]]  # key -> (ms to live, DUMP)
    person_snapshot: Path  # astronaut person named "Eileen", with faces in both media
    media_snapshot: Path  # plus a Split decision naming clip.webm's face
    keys: dict[str, str]
    clip_original: Path
    clip_cache_digests: set[str]
    clip_face_ids: set[str]
    astro: str
    astro_face_ids: set[str]

    @property
    def home(self) -> Path:
        return Path(self.env["MEDIALENS_HOME"])

    @property
    def store(self) -> MediaStore:
        return MediaStore(root=str(self.home / "store"))

    def restore(self, snapshot: Path) -> None:
        import redis

        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(snapshot, self.work, symlinks=True)
        client = redis.Redis.from_url(self.redis_url)
        client.flushall()
        for k, (ttl, value) in self.redis_dump.items():
            client.restore(k, max(ttl, 0), value)
        client.close()


def _manifest(store: MediaStore, asset: str, key: str) -> dict[str, Any]:
    manifest = store.read_manifest(asset, key)
    assert manifest is not None, f"no {asset} manifest for {key}"
    return manifest


def _snapshot(work: Path, to: Path) -> Path:
    shutil.copytree(work, to, symlinks=True)
    return to


@pytest.fixture(scope="module")
def library(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    import redis

    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    base = tmp_path_factory.mktemp("forget_library")
    server = RedisServer(base / "redis").start()
    try:
        work = base / "work"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
        env.update(MEDIALENS_HOME=str(work / "home"), DAGSTER_HOME=str(work / "dagster_home"), REDIS_URL=server.url)
        (work / "home").mkdir(parents=True)
        (work / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
        keys = {
            r["source_name"]: r["key"]
            for f in (samples["clip.webm"], samples["astronaut.png"])
            for r in _json(env, "analyse", str(f))["results"]
        }
        clip = keys["clip.webm"]
        astro = _json(env, "show", keys["astronaut.png"])["faces"][0]["person_id"]
        astro_faces = {a["face_id"] for a in _json(env, "people", "show", astro)["appearances"]}
        assert {f.split("/")[0] for f in astro_faces} == set(keys.values()), astro_faces  # one person, both media
        assert ml(env, "people", "name", astro, "Eileen").returncode == 0
        person_snapshot = _snapshot(work, base / "person_snapshot")
        clip_faces = {f["face_id"] for f in _json(env, "show", clip)["faces"]}
        assert ml(env, "people", "split", astro, sorted(clip_faces)[0]).returncode == 0
        media_snapshot = _snapshot(work, base / "media_snapshot")

        store = MediaStore(root=str(work / "home" / "store"))
        frames = store.read_table(_manifest(store, "keyframes", clip)["table"]).column("path").to_pylist()
        audio = _manifest(store, "audio_track", clip)["path"]
        digests = {file_digest(p) for p in [*frames, audio]}
        client = redis.Redis.from_url(server.url)
        dump = {k: (client.pttl(k), client.dump(k)) for k in client.scan_iter("*")}
        client.close()
        assert {k.decode().rsplit(":", 1)[-1] for k in dump} & digests  # its results are cached
        yield Library(
            work=work,
            env=env,
            redis_url=server.url,
            redis_dump=dump,
            person_snapshot=person_snapshot,
            media_snapshot=media_snapshot,
            keys=keys,
            clip_original=Path(_manifest(store, "media_file", clip)["path"]),
            clip_cache_digests=digests,
            clip_face_ids=clip_faces,
            astro=astro,
            astro_face_ids=astro_faces,
        )
    finally:
        server.kill()


def _collections(env: dict[str, str]) -> list[str]:
    from media_assets.plumbing.config import Paths
    from resources import build_resources

    with build_resources(Paths.from_env(env), env={})["qdrant"].client() as c:
        return [col.name for col in c.get_collections().collections]


def _runs_of(env: dict[str, str], key: str) -> list[str]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.storage.dagster_run import RunsFilter

    with DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"])) as instance:
        return [r.dagster_run.run_id for r in instance.get_run_records(RunsFilter(tags={"dagster/partition": key}))]


def _journals(lib: Library) -> list[str]:
    folder = lib.home / "store" / JOURNAL_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _killed_at(env: dict[str, str], step: str, *args: str, how: str = "") -> subprocess.CompletedProcess[str]:
    return ml({**env, "MEDIALENS_FAULT": f"forget:{step}{how}"}, *args, "--json")


def _assert_media_gone(lib: Library, key: str) -> None:
    import redis

    assert _files_mentioning(lib.home, key) == []  # tables, artefacts, manifests, source, decisions, journal
    assert _files_mentioning(Path(lib.env["DAGSTER_HOME"]), key) == []  # partition, runs and their events
    assert not lib.clip_original.exists()  # the content-addressed original (named by its hash)
    assert _journals(lib) == []
    assert key not in _partitions(lib.env) and lib.keys["astronaut.png"] in _partitions(lib.env)
    assert _runs_of(lib.env, key) == []
    for collection in _collections(lib.env):
        assert not any(p.get("partition") == key for p in _payloads(lib.env, collection)), collection
    client = redis.Redis.from_url(lib.redis_url)
    cached = {k.decode().rsplit(":", 1)[-1] for k in client.scan_iter("*")}
    client.close()
    assert not cached & lib.clip_cache_digests
    people = _json(lib.env, "people")["persons"]  # a fresh re-clustering does not bring its faces back
    assert people and not any(key in p["media"] for p in people)
    assert any(p["person_id"] == lib.astro and p["name"] == "Eileen" for p in people)  # the other media's person


@pytest.mark.slow
@pytest.mark.parametrize("step", MEDIA_STEPS)
def test_forget_media_killed_at_any_step_finishes_on_rerun(library: Library, step: str) -> None:
    lib, key = library, library.keys["clip.webm"]
    lib.restore(lib.media_snapshot)
    killed = _killed_at(lib.env, f"media.{step}", "forget", "media", key)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _journals(lib) == [f"media-{key}.json"]  # the journal was written before anything went

    done = _json(lib.env, "forget", "media", key)
    assert done["what"] == "media" and RESUMED_NOTE in done["notes"], done
    _assert_media_gone(lib, key)


@pytest.mark.slow
def test_forget_media_interrupted_by_ctrl_c_exits_130_and_reruns(library: Library) -> None:
    lib, key = library, library.keys["clip.webm"]
    lib.restore(lib.media_snapshot)
    stopped = _killed_at(lib.env, "media.files", "forget", "media", key, how=":sigint")
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stdout == "" and _journals(lib) == [f"media-{key}.json"]
    done = _json(lib.env, "forget", "media", key)
    assert RESUMED_NOTE in done["notes"] and done["files"], done  # the rest of the files went now
    _assert_media_gone(lib, key)


@pytest.mark.slow
def test_resume_unfinished_completes_a_forget_and_the_file_can_be_added_again(
    library: Library, samples: dict[str, Path]
) -> None:
    lib, key = library, library.keys["clip.webm"]
    lib.restore(lib.media_snapshot)
    assert _killed_at(lib.env, "media.vectors", "forget", "media", key).returncode == -signal.SIGKILL
    p = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT], env=lib.env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr
    [done] = json.loads(p.stdout)
    assert (done["what"], done["id"]) == ("media", key) and RESUMED_NOTE in done["notes"]
    _assert_media_gone(lib, key)
    assert ml(lib.env, "forget", "media", key).returncode == 1  # nothing of it left to find

    # the user may add the same bytes again: a fresh partition, analysed from scratch
    again = _json(lib.env, "analyse", str(samples["clip.webm"]))["results"][0]
    assert again["key"] == key and again["status"] == "ok" and key in _partitions(lib.env)
    assert _json(lib.env, "show", key)["faces"]


def _face_ids_in(lib: Library, key: str) -> set[str]:
    table = lib.store.read_table(_manifest(lib.store, "faces", key)["table"])
    return {f"{key}/{kf}/{face}" for kf, face in zip(table["kf"].to_pylist(), table["face"].to_pylist(), strict=True)}


def _assert_person_gone(lib: Library) -> None:
    from media_assets.analysis import people as persons
    from media_assets.plumbing.people_log import DOSSIERS, load_decisions

    gone = lib.astro_face_ids
    for key in lib.keys.values():
        assert not _face_ids_in(lib, key) & gone
    assert not {p["face_id"] for p in _payloads(lib.env, "faces")} & gone
    assert _files_mentioning(lib.home, "Eileen") == []
    assert _files_mentioning(Path(lib.env["DAGSTER_HOME"]), "Eileen") == []  # not even in old dossier runs
    assert _journals(lib) == []
    manifest = lib.store.read_manifest(DOSSIERS, "library")
    assert manifest is not None
    assert lib.astro not in lib.store.read_table(manifest["tables"]["persons"]).column("person_id").to_pylist()
    assert not set(lib.store.read_table(manifest["tables"]["appearances"]).column("face_id").to_pylist()) & gone
    forgets = [d for d in load_decisions(lib.store) if isinstance(d, persons.ForgetPerson)]
    assert [(d.person_id, set(d.face_ids)) for d in forgets] == [(lib.astro, gone)]  # once, however many tries


@pytest.mark.slow
@pytest.mark.parametrize("step", PERSON_STEPS)
def test_forget_person_killed_at_any_step_finishes_on_rerun(
    library: Library, samples: dict[str, Path], step: str
) -> None:
    lib = library
    lib.restore(lib.person_snapshot)
    killed = _killed_at(lib.env, f"person.{step}", "forget", "person", lib.astro)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _journals(lib) == [f"person-{lib.astro}.json"]

    done = _json(lib.env, "forget", "person", lib.astro)
    assert done["what"] == "person" and RESUMED_NOTE in done["notes"], done
    _assert_person_gone(lib)
    # analysing the file again re-clusters the library: the forgotten faces stay out
    assert _json(lib.env, "analyse", str(samples["astronaut.png"]))["results"][0]["status"] == "ok"
    _assert_person_gone(lib)
    assert ml(lib.env, "forget", "person", lib.astro).returncode == 1


@pytest.mark.slow
def test_forget_person_resumes_after_the_dossiers_no_longer_know_it(library: Library) -> None:
    lib = library
    lib.restore(lib.person_snapshot)
    assert _killed_at(lib.env, "person.decision", "forget", "person", lib.astro).returncode == -signal.SIGKILL
    # any re-clustering now leaves the person out (the decision is in the log); the journal still knows it
    assert lib.astro not in {p["person_id"] for p in _json(lib.env, "people")["persons"]}
    done = _json(lib.env, "forget", "person", lib.astro)
    assert RESUMED_NOTE in done["notes"] and done["face_rows"] == len(lib.astro_face_ids), done
    assert done["vectors"] == len(lib.astro_face_ids)
    _assert_person_gone(lib)


# -- the fault hook and the journal, without a library -------------------------------------------------
def test_fault_hook_is_inert_unless_its_step_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from media_assets.service import forget

    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(forget.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    monkeypatch.delenv("MEDIALENS_FAULT", raising=False)
    forget._fault_point("media.files")
    monkeypatch.setenv("MEDIALENS_FAULT", "forget:media.cache")
    forget._fault_point("media.files")
    forget._fault_point("person.cache")
    assert killed == []
    forget._fault_point("media.cache")
    monkeypatch.setenv("MEDIALENS_FAULT", "forget:person.runs:sigint")
    forget._fault_point("person.runs")
    assert killed == [(os.getpid(), signal.SIGKILL), (os.getpid(), signal.SIGINT)]


def test_journal_is_written_whole_and_owner_only(tmp_path: Path) -> None:
    from media_assets.service import forget

    store = MediaStore(root=str(tmp_path / "store"))
    path = forget.journal_path(store, "media", "talk-0123456789")
    forget._write_journal(path, {"format": forget.JOURNAL_FORMAT, "what": "media", "id": "talk-0123456789"})
    assert forget._read_journal(path) == {"format": 1, "what": "media", "id": "talk-0123456789"}
    assert path.stat().st_mode & 0o077 == 0 and [p.name for p in path.parent.iterdir()] == [path.name]
    assert forget.pending_forgets(store) == [("media", "talk-0123456789")]
    forget._drop_journal(path)
    assert forget.pending_forgets(store) == []
    with pytest.raises(forget.NothingToForget):
        forget.journal_path(store, "media", "../../etc/passwd")  # not an id: never a file name
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        forget._read_journal(path)
