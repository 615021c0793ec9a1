"""`medialens backup DIR` / `restore DIR` through the real CLI (subprocesses), as a user runs them.

The end-to-end case backs a library up while `medialens analyse` of another file is running, then
restores it into a new, empty home: what the library showed before that run is there unchanged
(show, search, people, stale), and the file the run had not finished is consistent (what `show`
has, `stale` does not ask for again, and the reverse). The quick cases use a small hand-made store:
incremental copies, a killed backup's leftovers, a corrupted blob, a non-empty home.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SETTINGS

MEDIALENS = Path(sys.executable).parent / "medialens"
BEFORE = ("clip.webm", "astronaut.png", "speech.mp3")
DURING = "talk.mp4"
QUERIES = ("crane offline", "astronaut", "speech")
# show fields of each analysis asset (media_file: the media itself)
SHOW_FIELD = {
    "keyframes": "keyframes",
    "ocr_text": "ocr",
    "tags": "tags",
    "poses": "poses",
    "faces": "faces",
    "safety": "safety",
    "transcript": "transcript",
    "summary": "summary",
    "media_file": "kind",
}


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600)


def _json(env: dict[str, str], *args: str) -> Any:
    p = ml(env, *args, "--json")
    assert p.returncode == 0, f"medialens {' '.join(args)}: rc {p.returncode}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


def _env(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(base / "home"), DAGSTER_HOME=str(base / "dagster_home"))
    return env


def _normalised(obj: Any, env: dict[str, str]) -> Any:
    text = json.dumps(obj, sort_keys=True)
    for var, name in (("MEDIALENS_HOME", "<home>"), ("DAGSTER_HOME", "<dagster_home>")):
        text = text.replace(env[var] + "/", name + "/")
    return json.loads(text)


def _library_view(env: dict[str, str], keys: list[str]) -> dict[str, Any]:
    """What a user sees of the media `keys`: show, search hits on them, people, their stale rows."""
    view: dict[str, Any] = {"show": {k: _json(env, "show", k) for k in keys}}
    view["search"] = {
        q: [h for h in _json(env, "search", q, "--limit", "100")["hits"] if h["key"] in keys] for q in QUERIES
    }
    view["people"] = _json(env, "people")
    view["stale"] = [s for s in _json(env, "stale")["stale"] if s["partition"] in keys]
    return _normalised(view, env)


def _latest(root: Path) -> dict[str, Any]:
    """The manifest of the latest snapshot in a backup folder."""
    name = json.loads((root / "latest.json").read_text())["snapshot"]
    data: dict[str, Any] = json.loads((root / "snapshots" / name).read_text())
    return data


def _blobs(root: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / "objects").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_backup_while_analysing_then_restore(samples: dict[str, Path], tmp_path: Path) -> None:
    env = _env(tmp_path / "a")
    Path(env["MEDIALENS_HOME"]).mkdir(parents=True)
    (Path(env["MEDIALENS_HOME"]) / "medialens.yaml").write_text(TEST_SETTINGS)
    results = _json(env, "analyse", *(str(samples[n]) for n in BEFORE))["results"]
    assert [r["status"] for r in results] == ["ok"] * len(BEFORE), results
    keys = sorted(r["key"] for r in results)
    before = _library_view(env, keys)
    assert before["stale"] == [] and before["people"]["persons"]
    assert any(before["search"].values())

    # `analyse` of one more file in the background; back up while its run is in progress
    store = Path(env["MEDIALENS_HOME"]) / "store"
    analysed = {p.name for p in (store / "manifests" / "keyframes").iterdir()}
    running = subprocess.Popen(
        [str(MEDIALENS), "analyse", str(samples[DURING]), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not {p.name for p in (store / "manifests" / "keyframes").iterdir()} - analysed:
            assert running.poll() is None, running.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        assert running.poll() is None  # its run is in progress: keyframes done, the models not yet
        backup_dir = tmp_path / "backup"
        started = time.monotonic()
        first = _json(env, "backup", str(backup_dir))
        took = time.monotonic() - started
        overlapped = running.poll() is None
        out, err = running.communicate(timeout=600)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 0, err[-3000:]
    during_key = json.loads(out)["results"][0]["key"]
    print(f"first backup: {first} in {took:.1f} s; the run was still going at its end: {overlapped}")
    assert first["dir"] == str(backup_dir) and first["files"] > 20 and first["bytes"] > 0
    assert 0 < first["copied_files"] <= first["files"] and first["copied_bytes"] <= first["bytes"]
    originals = sum(samples[n].stat().st_size for n in BEFORE)
    assert first["copied_bytes"] >= originals

    # restore into a new, empty home
    new = _env(tmp_path / "b")
    restored = _json(new, "restore", str(backup_dir))
    assert restored == {"dir": str(backup_dir), "files": first["files"], "bytes": first["bytes"], "verified": True}
    assert (Path(new["MEDIALENS_HOME"]) / "medialens.yaml").read_text() == TEST_SETTINGS
    after = _library_view(new, keys)
    assert after == before
    # the old home's paths are nowhere in the new one (manifests, tables, event logs, dagster.yaml)
    old_home = env["MEDIALENS_HOME"].encode()
    for folder in (new["MEDIALENS_HOME"], new["DAGSTER_HOME"]):
        for p in Path(folder).rglob("*"):
            if p.is_file() and "storage" not in p.relative_to(folder).parts:  # compute logs are logs
                assert old_home not in p.read_bytes(), p

    # the file the run had not finished: present or not, show and stale agree
    stale = [s for s in _json(new, "stale")["stale"] if s["partition"] == during_key]
    sources = Path(new["MEDIALENS_HOME"]) / "store" / "sources" / f"{during_key}.json"
    if sources.exists():
        shown = _json(new, "show", during_key)
        never = {s["asset"] for s in stale if s["reason"] == "never materialised"}
        for asset, fld in SHOW_FIELD.items():
            if asset in never:
                assert shown[fld] is None, (asset, shown[fld])
            elif not any(s["asset"] == asset for s in stale):
                assert shown[fld] is not None, asset
    print(f"{during_key} in the restored home: {len(stale)} stale rows ({sorted({s['asset'] for s in stale})})")

    # a second backup copies only what is new: the in-flight file's results, never the originals again
    blobs = _blobs(backup_dir)
    second = _json(env, "backup", str(backup_dir))
    assert second["files"] > first["files"]
    assert second["copied_bytes"] < first["copied_bytes"] / 2, (first, second)
    assert second["copied_files"] < second["files"] / 2
    assert all(_blobs(backup_dir)[name] == stat for name, stat in blobs.items())  # none rewritten
    snapshot = json.loads(
        (backup_dir / "snapshots" / json.loads((backup_dir / "latest.json").read_text())["snapshot"]).read_text()
    )
    originals_in = {e["sha256"] for e in snapshot["files"] if e["path"].startswith("store/media/")}
    assert {hashlib.sha256(samples[n].read_bytes()).hexdigest() for n in (*BEFORE, DURING)} <= originals_in

    # restore refuses a home that holds a library
    refused = ml(new, "restore", str(backup_dir), "--json")
    assert refused.returncode == 2 and "already holds" in refused.stderr and refused.stdout == ""


def _small_home(base: Path) -> dict[str, str]:
    """A store made by hand (no instance, no Qdrant): enough for the backup format itself."""
    env = _env(base)
    store = Path(env["MEDIALENS_HOME"]) / "store"
    original = os.urandom(300_000)
    sha = hashlib.sha256(original).hexdigest()
    (store / "media" / sha[:2]).mkdir(parents=True)
    (store / "media" / sha[:2] / f"{sha}.mp4").write_bytes(original)
    (store / "manifests" / "tags").mkdir(parents=True)
    (store / "manifests" / "tags" / "a-1.json").write_text(json.dumps({"table": str(store / "tags" / "a-1.parquet")}))
    (store / "person_dossiers").mkdir()
    (store / "person_dossiers" / "decisions.jsonl").write_text('{"op": "name"}\n')
    (store / ".scratch" / "h-1-2.00").mkdir(parents=True)
    (store / ".scratch" / "h-1-2.00" / "half").write_text("never backed up")
    return env


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_incremental_backup_and_verified_restore(tmp_path: Path) -> None:
    env = _small_home(tmp_path / "a")
    store = Path(env["MEDIALENS_HOME"]) / "store"
    target = tmp_path / "backup"
    first = _json(env, "backup", str(target))
    assert first["files"] == 3 and first["copied_files"] == 3 and first["copied_bytes"] == first["bytes"]
    assert first["bytes"] > 300_000

    # a backup killed half-way left a temporary blob: the next one sweeps it and goes on
    (target / "tmp" / "999-dead").mkdir(parents=True)
    (target / "tmp" / "999-dead" / "x").write_bytes(b"half a blob")
    (store / "person_dossiers" / "decisions.jsonl").write_text('{"op": "name"}\n{"op": "merge"}\n')
    (store / "reports").mkdir()
    (store / "reports" / "r.json").write_text("{}")
    second = _json(env, "backup", str(target))
    assert second["files"] == 4 and second["copied_files"] == 2
    assert second["copied_bytes"] < 1000  # the original is not copied again
    assert not (target / "tmp").exists() or not any((target / "tmp").rglob("*"))
    assert len(list((target / "snapshots").iterdir())) == 2

    # restore into a new home: the same files, paths into the new home
    new = _env(tmp_path / "b")
    p = ml(new, "restore", str(target), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"dir": str(target), "files": 4, "bytes": second["bytes"], "verified": True}
    new_store = Path(new["MEDIALENS_HOME"]) / "store"
    old = {k: v for k, v in _files(store).items() if not k.startswith(".scratch/")}
    got = _files(new_store)
    assert set(got) == set(old)
    manifest = json.loads(got["manifests/tags/a-1.json"])
    assert manifest == {"table": str(new_store / "tags" / "a-1.parquet")}
    assert all(got[k] == v for k, v in old.items() if not k.startswith("manifests/"))

    # restoring into a home that holds a store is refused
    refused = ml(new, "restore", str(target))
    assert refused.returncode == 2 and "already holds a store" in refused.stderr

    # a corrupted blob: restore fails naming the file, and leaves nothing that looks restored
    snapshot = json.loads(
        (target / "snapshots" / json.loads((target / "latest.json").read_text())["snapshot"]).read_text()
    )
    entry = next(e for e in snapshot["files"] if e["path"].startswith("store/media/"))
    blob = target / "objects" / entry["sha256"][:2] / entry["sha256"]
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    other = _env(tmp_path / "c")
    bad = ml(other, "restore", str(target), "--json")
    assert bad.returncode == 1 and bad.stdout == ""
    assert entry["path"] in bad.stderr and "corrupt" in bad.stderr
    home = Path(other["MEDIALENS_HOME"])
    assert not (home / "store").exists() and not [p for p in home.rglob("*") if p.is_file()]

    # no snapshot at all: a clear error
    empty = ml(other, "restore", str(tmp_path / "nothing"))
    assert empty.returncode == 1 and "holds no snapshot" in empty.stderr


def test_holes_of_sparse_files_stay_holes_in_the_backup_and_the_restore(tmp_path: Path) -> None:
    # embedded Qdrant preallocates 32 MiB files that are mostly holes; copying the zeros would cost
    # ~150 MiB per collection in every backup
    from media_assets.service.backup import CHUNK, HOLE_BLOCK, Objects, _copy_verified

    src = tmp_path / "wal-open-1"
    with open(src, "wb") as f:
        f.write(b"head" * 1000)
        f.seek(32 * CHUNK)
        f.write(b"tail")
    data = src.read_bytes()
    objects = Objects(tmp_path / "backup")
    sha, size, new, written, _ = objects.put_file(src)
    assert (sha, size, new) == (hashlib.sha256(data).hexdigest(), len(data), True)
    assert written <= 2 * HOLE_BLOCK  # the first and the last block, not the 32 MiB of zeros between
    blob = objects.path(sha)
    assert blob.stat().st_blocks * 512 < 4 * CHUNK
    assert objects.put_file(src)[2:4] == (False, 0)  # there already: nothing written
    dest = tmp_path / "restored" / "wal-open-1"
    _copy_verified(objects, {"sha256": sha, "size": size, "path": "qdrant/edge/text/wal/open-1"}, dest)
    assert dest.read_bytes() == data and dest.stat().st_blocks * 512 < 4 * CHUNK
