import hashlib
import os
from pathlib import Path

import pyarrow as pa

from resources.store import MediaStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def test_manifests_and_sources_round_trip(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    assert store.read_manifest("keyframes", "k") is None
    store.write_manifest("keyframes", "k", {"count": 3})
    assert store.read_manifest("keyframes", "k") == {"count": 3}
    store.write_source("k", {"path": "/x"})
    assert store.read_source("k") == {"path": "/x"}


def test_fresh_artefact_dir_clears_a_failed_attempt(tmp_path: Path) -> None:
    store = MediaStore(root=str(tmp_path))
    d = store.fresh_artefact_dir("keyframes", "v", "k")
    (d / "00000.jpg").write_bytes(b"half")
    d2 = store.fresh_artefact_dir("keyframes", "v", "k")
    assert d2 == d and not list(d.iterdir())
