"""A store that runs out of space: the write that does not fit fails with the path and the bytes, every
earlier result stays, nothing half written is left, and the same write succeeds once space is freed.

Real full filesystems: a small tmpfs mounted as the store (needs root; skipped where mounting is not
allowed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import build_asset_context

from media_assets.analysis import people as persons
from media_assets.analysis.keyframes import KeyframeParams
from media_assets.plumbing.people_log import append_decision, decisions_path, load_decisions
from resources.atomic import SCRATCH_DIR, StoreFull, encode_table, free_bytes
from resources.store import MediaStore

KB = 1024
MB = 1024 * KB


def mount_tmpfs(where: Path, size: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here to mount a small tmpfs as a full store")
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {p.stderr.strip()}")


def unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs."""
    fs = tmp_path / "fs"
    mount_tmpfs(fs, 8 * MB)
    try:
        yield fs
    finally:
        unmount(fs)


def fill(fs: Path, leave: int) -> Path:
    """Fill the filesystem until about `leave` bytes are free; returns the filler file."""
    filler = fs / "filler"
    todo = max(0, free_bytes(fs) - leave)
    chunk = b"\0" * MB
    with filler.open("ab") as fh:
        try:
            while todo > 0:
                n = min(todo, len(chunk))
                fh.write(chunk[:n])
                fh.flush()
                todo -= n
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def scratch_files(store: MediaStore) -> list[Path]:
    return [p for p in (store.path / SCRATCH_DIR).rglob("*") if p.is_file()]


def assert_full(err: StoreFull, store: MediaStore, target: Path, needs: str) -> None:
    msg = str(err)
    assert msg.startswith(f"store full: writing {target}"), msg
    assert needs in msg and f"bytes free on {store.path} (free space and run again)" in msg, msg
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC


def random_table(n_bytes: int) -> pa.Table:
    return pa.table({"blob": [os.urandom(n_bytes)]})


def test_a_table_that_does_not_fit(small_fs: Path) -> None:
    store = MediaStore(root=str(small_fs / "store"))
    old = random_table(10 * KB)
    path = store.write_table("faces", "v", "k", old)
    store.write_manifest("faces", "k", {"table": str(path)})
    big = random_table(300 * KB)
    filler = fill(small_fs, 32 * KB)
    with pytest.raises(StoreFull) as err:
        store.write_table("faces", "v", "k", big)
    assert_full(err.value, store, path, f"needs {len(encode_table(big))} bytes")
    assert store.read_table(path).equals(old)  # the earlier result is intact
    assert store.read_manifest("faces", "k") == {"table": str(path)}
    assert scratch_files(store) == []  # what the failed write had written is gone
    filler.unlink()
    store.write_table("faces", "v", "k", big)
    assert store.read_table(path).equals(big)


def test_a_manifest_that_does_not_fit(small_fs: Path) -> None:
    store = MediaStore(root=str(small_fs / "store"))
    store.write_manifest("ocr_text", "k", {"lines": ["old"]})
    filler = fill(small_fs, 0)
    big = {"lines": ["x" * 100] * 2000}
    with pytest.raises(StoreFull) as err:
        store.write_manifest("ocr_text", "k", big)
    assert_full(err.value, store, store.manifest_path("ocr_text", "k"), "needs ")
    assert store.read_manifest("ocr_text", "k") == {"lines": ["old"]}
    assert scratch_files(store) == []
    filler.unlink()
    store.write_manifest("ocr_text", "k", big)
    assert store.read_manifest("ocr_text", "k") == big


def test_an_original_that_would_not_fit_is_refused_before_copying(small_fs: Path, tmp_path: Path) -> None:
    store = MediaStore(root=str(small_fs / "store"))
    src = tmp_path / "holiday.mp4"  # on another filesystem: no hard link, a copy
    src.write_bytes(os.urandom(600 * KB))
    digest = "ab" * 32
    filler = fill(small_fs, 200 * KB)
    free_before = free_bytes(small_fs)
    with pytest.raises(StoreFull) as err:
        store.add_original(src, digest, ".mp4", what="original of holiday.mp4")
    dest = store.media_path(digest, ".mp4")
    assert_full(err.value, store, dest, f"(original of holiday.mp4) needs {600 * KB} bytes")
    assert free_bytes(small_fs) == free_before  # refused up front: nothing was copied
    assert not dest.exists() and scratch_files(store) == [] and src.exists()
    filler.unlink()
    assert store.add_original(src, digest, ".mp4").read_bytes() == src.read_bytes()


def test_a_keyframe_folder_that_does_not_fit(small_fs: Path, samples: dict[str, Path]) -> None:
    from media_assets.assets.frames import ASSET, VERSION, keyframes_for

    store = MediaStore(root=str(small_fs / "store"))
    media = {"kind": "video", "path": str(samples["talk.mp4"]), "duration_s": 24.0, "source_name": "talk.mp4"}
    context = build_asset_context()
    first = keyframes_for(context, store, "talk-1", media, KeyframeParams())
    table = store.read_table(first["table"])
    jpegs = {p.name: p.read_bytes() for p in Path(first["dir"]).iterdir()}
    assert first["count"] >= 4 and len(jpegs) == first["count"]
    filler = fill(small_fs, 100 * KB)  # less than the folder takes
    with pytest.raises(StoreFull) as err:  # the same version again (a forced re-materialisation)
        keyframes_for(context, store, "talk-1", media, KeyframeParams())
    assert_full(err.value, store, store.artefact_dir(ASSET, VERSION, "talk-1"), "needs at least ")
    assert "(keyframe JPEGs of talk-1)" in str(err.value)
    assert store.read_table(first["table"]).equals(table)  # the earlier keyframes are all there
    assert {p.name: p.read_bytes() for p in Path(first["dir"]).iterdir()} == jpegs
    assert scratch_files(store) == []
    filler.unlink()
    again = keyframes_for(context, store, "talk-1", media, KeyframeParams())
    assert again["count"] == first["count"] and store.read_table(again["table"]).equals(table)


def test_a_wav_that_does_not_fit(small_fs: Path, samples: dict[str, Path]) -> None:
    from media_assets.assets.audio import audio_for

    store = MediaStore(root=str(small_fs / "store"))
    media = {"kind": "audio", "audio_codec": "mp3", "path": str(samples["speech.mp3"]), "duration_s": 9.08}
    context = build_asset_context()
    first = audio_for(context, store, "speech-1", media)
    wav = Path(first["path"])
    old = wav.read_bytes()
    assert len(old) > 250 * KB
    filler = fill(small_fs, 64 * KB)
    with pytest.raises(StoreFull) as err:
        audio_for(context, store, "speech-1", media)
    assert_full(err.value, store, wav, f"needs about {44 + 2 * round(9.08 * 16000)} bytes")
    assert wav.read_bytes() == old and scratch_files(store) == []
    filler.unlink()
    assert Path(audio_for(context, store, "speech-1", media)["path"]).read_bytes() == old


def test_a_decision_that_does_not_fit_leaves_the_log_as_it_was(small_fs: Path) -> None:
    store = MediaStore(root=str(small_fs / "store"))
    append_decision(store, persons.Name("p-1", "Ada"))
    before = decisions_path(store).read_bytes()
    filler = fill(small_fs, 0)
    long_name = persons.Name("p-2", "x" * (64 * KB))  # more than the log's last page holds
    with pytest.raises(StoreFull) as err:
        append_decision(store, long_name)
    assert_full(err.value, store, decisions_path(store), "(a person decision) needs ")
    assert decisions_path(store).read_bytes() == before
    filler.unlink()
    append_decision(store, long_name)
    assert load_decisions(store) == [persons.Name("p-1", "Ada"), long_name]


# -- end to end: the real asset job through the CLI ---------------------------------------------------
def medialens(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "medialens"
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_full_store_fails_only_the_file_that_does_not_fit(
    samples: dict[str, Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "home" / "store"
    # An image's analyses take ~0.3 MB here (original, keyframe, tables, manifests); the video's
    # original alone is 446 kB.
    mount_tmpfs(store, 4 * MB)
    try:
        first = medialens(cli_env, "analyse", str(samples["chelsea.webp"]), "--json")
        assert first.returncode == 0, first.stderr
        (image,) = json.loads(first.stdout)["results"]
        shown = medialens(cli_env, "show", image["key"], "--json")
        assert shown.returncode == 0, shown.stderr

        filler = fill(store, 200 * KB)  # room for sources and manifests, not for the video
        video = samples["street.mkv"]
        failed = medialens(cli_env, "analyse", str(video), "--json")
        assert failed.returncode == 1, failed.stderr
        (result,) = json.loads(failed.stdout)["results"]
        assert result["status"] == "failed", result
        assert "store full" in result["reason"] and f"{store}/media/" in result["reason"], result
        assert "street.mkv" in result["reason"] and "bytes free on" in result["reason"], result
        assert medialens(cli_env, "show", image["key"], "--json").stdout == shown.stdout  # unchanged
        leftovers = [p for p in store.rglob(f"*{result['key']}*") if p.is_file()]
        assert leftovers == [store / "sources" / f"{result['key']}.json"]  # registered, nothing half written
        assert not [p for p in (store / SCRATCH_DIR).rglob("*") if p.is_file()]

        filler.unlink()
        again = medialens(cli_env, "analyse", str(video), "--json")
        assert again.returncode == 0, again.stderr
        (ok,) = json.loads(again.stdout)["results"]
        assert ok["status"] == "ok" and ok["key"] == result["key"] and ok["keyframes"] >= 1
    finally:
        unmount(store)
