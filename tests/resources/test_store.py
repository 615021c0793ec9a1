import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import asset, materialize

from media_assets.analysis import people as persons
from media_assets.plumbing.people_log import append_decision, decisions_path, load_decisions
from resources import atomic
from resources.atomic import SCRATCH_DIR, StoreFull, scratch_folder, worker_of
from resources.store import MediaStore
from resources.workers import Worker, this_worker

ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A separate Python process running `code` (a writer that dies, or one that stays alive)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_originals_are_content_addressed_and_linked(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path / "store"))
    src = tmp_path / "a.mp4"
    src.write_bytes(b"video")
    dest = store.add_original(src, sha(b"video"), ".MP4")
    assert dest == tmp_path / "store" / "media" / sha(b"video")[:2] / f"{sha(b'video')}.mp4"
    assert dest.read_bytes() == b"video" and src.exists()
    assert os.stat(dest).st_ino == os.stat(src).st_ino  # hard link, no second copy on disk
    assert store.add_original(src, sha(b"video"), ".mp4") == dest  # idempotent


def test_move_takes_the_file(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path / "store"))
    src = tmp_path / "in.wav"
    src.write_bytes(b"audio")
    dest = store.add_original(src, sha(b"audio"), ".wav", move=True)
    assert dest.read_bytes() == b"audio" and not src.exists()


def test_tables_are_written_atomically_and_old_versions_pruned(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    t = pa.table({"x": [1, 2]})
    old = store.write_table("keyframes", "1-aaaa", "k-0123456789", t)
    (store.artefact_dir("keyframes", "1-aaaa", "k-0123456789")).mkdir()
    other = store.write_table("keyframes", "1-aaaa", "other-0123456789", t)
    new = store.write_table("keyframes", "1-bbbb", "k-0123456789", t)
    assert not list(tmp_path.rglob("*.tmp"))
    removed = store.prune_other_versions("keyframes", "k-0123456789", "1-bbbb")
    assert old in removed and not old.exists()
    assert not store.artefact_dir("keyframes", "1-aaaa", "k-0123456789").exists()
    assert other.exists() and new.exists()  # other partitions and the new version stay
    assert store.read_table(new).num_rows == 2
    assert files_under(tmp_path / SCRATCH_DIR) == set()  # pruned via scratch, nothing left there


def test_manifests_and_sources_round_trip(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    assert store.read_manifest("keyframes", "k") is None
    store.write_manifest("keyframes", "k", {"count": 3})
    assert store.read_manifest("keyframes", "k") == {"count": 3}
    store.write_source("k", {"path": "/x"})
    assert store.read_source("k") == {"path": "/x"}


def test_every_write_leaves_only_its_target(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = MediaStore(root=str(root))
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    linked, copied = elsewhere / "a.bin", elsewhere / "b.bin"
    linked.write_bytes(b"linked")
    copied.write_bytes(b"copied")
    store.write_source("k-1", {"path": "/x"})
    store.write_manifest("keyframes", "k-1", {"count": 1})
    store.write_table("keyframes", "v", "k-1", pa.table({"x": [1]}))
    store.write_table("keyframes", "v", "k-1", pa.table({"x": [2]}))  # replaced, not duplicated
    store.add_original(linked, sha(b"linked"), ".bin")
    store.add_original(copied, sha(b"copied"), ".bin", move=True)
    with store.atomic_dir(store.artefact_dir("keyframes", "v", "k-1")) as work:
        (work / "00000.jpg").write_bytes(b"jpeg")
    with store.atomic_file(root / "audio_track" / "v" / "k-1.wav") as tmp:
        tmp.write_bytes(b"wav")
    assert files_under(root) == {
        "sources/k-1.json",
        "manifests/keyframes/k-1.json",
        "keyframes/v/k-1.parquet",
        "keyframes/v/k-1/00000.jpg",
        f"media/{sha(b'linked')[:2]}/{sha(b'linked')}.bin",
        f"media/{sha(b'copied')[:2]}/{sha(b'copied')}.bin",
        "audio_track/v/k-1.wav",
    }
    assert store.read_table(store.table_path("keyframes", "v", "k-1")).column("x").to_pylist() == [2]


def test_a_failed_block_changes_nothing(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    target = tmp_path / "audio_track" / "v" / "k.wav"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), store.atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("decoder broke")
    assert target.read_bytes() == b"old"
    with store.atomic_file(target):
        pass  # nothing written (a file without audio): the target stays
    assert target.read_bytes() == b"old"
    assert files_under(tmp_path / SCRATCH_DIR) == set()


def test_atomic_dir_keeps_the_old_folder_complete_until_the_swap(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    target = store.artefact_dir("keyframes", "v", "k")
    with store.atomic_dir(target) as work:
        for i in range(3):
            (work / f"{i:05d}.jpg").write_bytes(b"old")
    with store.atomic_dir(target) as work:
        (work / "00000.jpg").write_bytes(b"new")
        # filling the new folder leaves the old one whole and in place
        assert sorted(p.name for p in target.iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
        assert {p.read_bytes() for p in target.iterdir()} == {b"old"}
    assert [p.name for p in target.iterdir()] == ["00000.jpg"] and (target / "00000.jpg").read_bytes() == b"new"
    with pytest.raises(ValueError), store.atomic_dir(target) as work:
        (work / "00000.jpg").write_bytes(b"broken")
        raise ValueError("video is truncated")
    assert (target / "00000.jpg").read_bytes() == b"new"
    assert files_under(tmp_path / SCRATCH_DIR) == set()


def test_atomic_dir_without_an_atomic_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels or filesystems without renameat2(RENAME_EXCHANGE): the old folder goes aside first."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    store = MediaStore(root=str(tmp_path))
    target = store.artefact_dir("keyframes", "v", "k")
    for content in (b"one", b"two"):
        with store.atomic_dir(target) as work:
            (work / "00000.jpg").write_bytes(content)
    assert (target / "00000.jpg").read_bytes() == b"two"
    assert files_under(tmp_path) == {"keyframes/v/k/00000.jpg"}


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(ROOT).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    d = shm / f"medialens-test-{os.getpid()}"
    d.mkdir()
    try:
        yield d
    finally:
        atomic.remove_path(d)


def test_a_subfolder_on_another_filesystem_is_written_beside_its_target(tmp_path: Path, other_filesystem: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    (tmp_path / "keyframes").symlink_to(other_filesystem)  # a user moved the keyframes elsewhere
    path = store.write_table("keyframes", "v", "k", pa.table({"x": [1]}))
    for content in (b"one", b"two"):
        with store.atomic_dir(store.artefact_dir("keyframes", "v", "k")) as work:
            (work / "00000.jpg").write_bytes(content)
    assert store.read_table(path).num_rows == 1
    assert (other_filesystem / "v" / "k" / "00000.jpg").read_bytes() == b"two"
    assert files_under(other_filesystem) == {"v/k.parquet", "v/k/00000.jpg"}  # no temporary names left
    assert files_under(tmp_path / SCRATCH_DIR) == set()


KILLED_MID_WRITE = """
    import os, signal, sys
    from pathlib import Path
    import pyarrow as pa
    from resources import atomic

    root, target = Path(sys.argv[1]), Path(sys.argv[2])
    atomic.write_table(root, target, pa.table({"v": ["first"] * 1000}))
    # the second write dies with its bytes in scratch and the rename not done
    atomic.fsync_path = lambda path: os.kill(os.getpid(), signal.SIGKILL)
    atomic.write_table(root, target, pa.table({"v": ["second"] * 1000}))
"""


def test_a_killed_write_leaves_the_old_table_and_a_scratch_folder_the_next_sweep_removes(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    target = store.table_path("keyframes", "v", "k")
    proc = child(KILLED_MID_WRITE, str(tmp_path), str(target))
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert store.read_table(target).column("v").to_pylist() == ["first"] * 1000
    (left,) = (tmp_path / SCRATCH_DIR).iterdir()
    assert worker_of(left.name) is not None and worker_of(left.name).pid == proc.pid  # type: ignore[union-attr]
    assert [p.name.endswith("-k.parquet") for p in left.iterdir()] == [True]  # the whole second table
    assert store.sweep_scratch() == [left]
    assert not left.exists() and files_under(tmp_path) == {"keyframes/v/k.parquet"}


KILLED_FILLING_A_FOLDER = """
    import os, signal, sys
    from pathlib import Path
    from resources import atomic

    root, target = Path(sys.argv[1]), Path(sys.argv[2])
    with atomic.atomic_dir(root, target) as work:
        for i in range(5):
            (work / f"{i:05d}.jpg").write_bytes(b"new")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_kill_while_filling_a_folder_leaves_the_old_folder(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    target = store.artefact_dir("keyframes", "v", "k")
    with store.atomic_dir(target) as work:
        (work / "00000.jpg").write_bytes(b"old")
    proc = child(KILLED_FILLING_A_FOLDER, str(tmp_path), str(target))
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert [(p.name, p.read_bytes()) for p in target.iterdir()] == [("00000.jpg", b"old")]
    assert len(store.sweep_scratch()) == 1
    assert files_under(tmp_path) == {"keyframes/v/k/00000.jpg"}


WRITES_FOREVER = """
    import sys
    from pathlib import Path
    import numpy as np
    import pyarrow as pa
    from resources import atomic

    root, target = Path(sys.argv[1]), Path(sys.argv[2])
    rows = np.random.default_rng(1).integers(0, 2**62, size=2_000_000)
    table = pa.table({"x": rows})
    while True:
        atomic.write_table(root, target, table)
        print("written", flush=True)
"""


def test_a_sigkill_at_any_moment_leaves_a_whole_table(tmp_path: Path) -> None:
    """A writer killed from outside, wherever it was: the target is always a complete table."""
    store = MediaStore(root=str(tmp_path))
    target = store.table_path("faces", "v", "k")
    proc = child(WRITES_FOREVER, str(tmp_path), str(target))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        time.sleep(0.7)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert store.read_table(target).num_rows == 2_000_000
    store.sweep_scratch()
    assert files_under(tmp_path) == {"faces/v/k.parquet"}
    assert not any((tmp_path / SCRATCH_DIR).iterdir())


STAYS_ALIVE_MID_WRITE = """
    import sys, time
    from pathlib import Path
    from resources import atomic

    root = Path(sys.argv[1])
    with atomic.atomic_file(root, root / "transcript" / "v" / "k.parquet") as tmp:
        tmp.write_bytes(b"half a table")
        print("writing", flush=True)
        time.sleep(120)
"""


def test_the_sweep_keeps_live_and_foreign_scratch_folders(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    foreign = tmp_path / SCRATCH_DIR / "another-host-1234-1700000000.00"
    foreign.mkdir(parents=True)
    (foreign / ".abc-k.parquet").write_bytes(b"theirs")
    not_ours = tmp_path / SCRATCH_DIR / "notes"
    not_ours.mkdir()
    mine = scratch_folder(tmp_path)
    (mine / ".x-k.parquet").write_bytes(b"in progress")
    proc = child(STAYS_ALIVE_MID_WRITE, str(tmp_path))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        assert store.sweep_scratch() == []  # alive (the child and this process), another host, not ours
        left = {p.name for p in (tmp_path / SCRATCH_DIR).iterdir()}
        assert {foreign.name, not_ours.name, mine.name} < left and len(left) == 4
        (theirs,) = left - {foreign.name, not_ours.name, mine.name}
        assert worker_of(theirs) == Worker(this_worker().host, proc.pid, worker_of(theirs).started)  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (removed,) = store.sweep_scratch()
    assert worker_of(removed.name).pid == proc.pid  # type: ignore[union-attr]
    assert foreign.exists() and not_ours.exists() and mine.exists()


EXITS_WITHOUT_CLEANUP = """
    import os, sys
    from pathlib import Path
    from resources import atomic

    folder = atomic.scratch_folder(Path(sys.argv[1]))
    (folder / ".x-k.parquet").write_bytes(b"half")
    print(folder, flush=True)
    os._exit(0)
"""


def test_every_run_sweeps_the_scratch_of_dead_processes(tmp_path: Path) -> None:
    """MediaStore.setup_for_execution: an in-process run (what the CLI starts) sweeps first."""
    store = MediaStore(root=str(tmp_path))
    proc = child(EXITS_WITHOUT_CLEANUP, str(tmp_path))
    out, _ = proc.communicate(timeout=60)
    dead = Path(out.strip())
    assert dead.is_dir()

    @asset
    def uses_store(store: MediaStore) -> None:
        store.write_manifest("uses_store", "k", {"ok": True})

    assert materialize([uses_store], resources={"store": store}).success
    assert not dead.exists()
    assert store.read_manifest("uses_store", "k") == {"ok": True}


def test_store_full_reads_well_and_pickles() -> None:
    import pickle

    err = StoreFull(Path("/x/store/keyframes/v/k.parquet"), 48213, 1024, Path("/x/store"))
    assert str(err) == (
        "store full: writing /x/store/keyframes/v/k.parquet needs 48213 bytes, 1024 bytes free on /x/store "
        "(free space and run again)"
    )
    assert isinstance(err, OSError) and err.errno == 28
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.needed == 48213


# -- the person decision log ----------------------------------------------------------------------
def test_a_torn_last_decision_is_ignored_then_cut_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = MediaStore(root=str(tmp_path))
    append_decision(store, persons.Name("p-1", "Ada"))
    log = decisions_path(store)
    with log.open("ab") as fh:
        fh.write(b'{"type": "Name", "person_id": "p-2", "na')  # a process killed mid-append
    with caplog.at_level(logging.WARNING):
        assert load_decisions(store) == [persons.Name("p-1", "Ada")]
    assert "torn last line" in caplog.text and str(log) in caplog.text
    append_decision(store, persons.Name("p-3", "Grace"))
    assert load_decisions(store) == [persons.Name("p-1", "Ada"), persons.Name("p-3", "Grace")]
    assert log.read_bytes().endswith(b"\n") and len(log.read_bytes().splitlines()) == 2


def test_a_complete_last_decision_without_newline_is_kept(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    log = decisions_path(store)
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps(persons.decision_to_json(persons.Name("p-1", "Ada")), sort_keys=True))
    assert load_decisions(store) == [persons.Name("p-1", "Ada")]
    append_decision(store, persons.Merge("p-1", "p-2"))
    assert load_decisions(store) == [persons.Name("p-1", "Ada"), persons.Merge("p-1", "p-2")]


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    append_decision(store, persons.Name("p-1", "Ada"))
    log = decisions_path(store)
    with log.open("ab") as fh:
        fh.write(b"{not json\n")
    append_decision(store, persons.Name("p-2", "Grace"))
    with pytest.raises(ValueError, match=r"decisions\.jsonl: line 2 is not a valid decision"):
        load_decisions(store)
