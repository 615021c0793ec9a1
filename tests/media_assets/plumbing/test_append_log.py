"""The append-only JSON Lines log under the person and review decisions: durable appends, torn-tail
repair, line-naming errors, atomic rewrites that never lose a concurrent append."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from media_assets.plumbing.append_log import AppendLog, encode
from resources.atomic import StoreFull
from tests.resources.test_disk_full import fill, small_fs  # noqa: F401 (small_fs: a fixture)

ROOT = Path(__file__).resolve().parents[3]


def parse(obj: Any) -> dict[str, Any]:
    """A record is an object with an int `n` (what the tests append)."""
    if not isinstance(obj, dict) or not isinstance(obj["n"], int):
        raise ValueError(f"not a record: {obj!r}")
    return obj


def make_log(tmp_path: Path) -> AppendLog[dict[str, Any]]:
    return AppendLog(tmp_path, tmp_path / "log" / "records.jsonl", parse, item="test record", what="a test record")


def test_append_then_read_in_order(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    assert log.read() == []
    for n in range(3):
        log.append({"n": n, "text": "ü"})
    assert log.read() == [{"n": 0, "text": "ü"}, {"n": 1, "text": "ü"}, {"n": 2, "text": "ü"}]
    assert log.path.read_bytes() == b"".join(encode({"n": n, "text": "ü"}) for n in range(3))
    assert encode({"z": 1, "a": 2}) == b'{"a": 2, "z": 1}\n'  # sorted keys: the same record, the same line


def test_invalid_record_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.append({"n": 1})
    before = log.path.read_bytes()
    with pytest.raises(ValueError, match=r"records\.jsonl: refusing to append an invalid test record"):
        log.append({"n": "one"})
    assert log.path.read_bytes() == before


def test_torn_last_line_is_skipped_then_cut_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = make_log(tmp_path)
    log.append({"n": 1})
    with log.path.open("ab") as fh:
        fh.write(b'{"n": 2, "te')  # a process killed mid-append
    with caplog.at_level(logging.WARNING):
        assert log.read() == [{"n": 1}]
    assert "torn last line" in caplog.text and str(log.path) in caplog.text
    log.append({"n": 3})
    assert log.read() == [{"n": 1}, {"n": 3}]
    assert log.path.read_bytes() == encode({"n": 1}) + encode({"n": 3})


def test_complete_last_line_without_newline_counts(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.path.parent.mkdir()
    log.path.write_bytes(b'{"n": 1}')
    assert log.read() == [{"n": 1}]
    log.append({"n": 2})
    assert log.path.read_bytes() == b'{"n": 1}\n{"n": 2}\n'


def test_bad_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.append({"n": 1})
    with log.path.open("ab") as fh:
        fh.write(b"{not json\n")
    log.append({"n": 2})
    with pytest.raises(ValueError, match=r"records\.jsonl: line 2 is not a valid test record"):
        log.read()
    with pytest.raises(ValueError, match="line 2"):
        log.rewrite_without(lambda r: r["n"] == 1)  # never rewrites over damage it cannot read


def test_rewrite_without_keeps_the_rest_byte_for_byte(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    assert log.rewrite_without(lambda r: True) == 0 and not log.path.exists()  # no log: nothing to do
    log.path.parent.mkdir()
    log.path.write_bytes(b'{"n": 1, "x": "kept as written"}\n{"n": 2}\n{"n": 3,  "spaced": true}\n')
    inode = log.path.stat().st_ino
    assert log.rewrite_without(lambda r: r["n"] == 7) == 0
    assert log.path.stat().st_ino == inode  # nothing removed: the file was not touched
    assert log.rewrite_without(lambda r: r["n"] == 2) == 1
    assert log.path.read_bytes() == b'{"n": 1, "x": "kept as written"}\n{"n": 3,  "spaced": true}\n'
    assert log.rewrite_without(lambda r: r["n"] == 2) == 0  # repeating it is harmless
    log.append({"n": 4})
    assert [r["n"] for r in log.read()] == [1, 3, 4]


def test_rewrite_without_drops_a_torn_tail(tmp_path: Path) -> None:
    """A torn last line was never confirmed and may name what is being forgotten: it goes too."""
    log = make_log(tmp_path)
    log.append({"n": 1})
    with log.path.open("ab") as fh:
        fh.write(b'{"n": 2, "key": "secret-med')
    assert log.rewrite_without(lambda r: r["n"] == 2) == 0  # no complete record matched
    assert log.path.read_bytes() == encode({"n": 1})


def test_rewrite_replaces_everything(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.append({"n": 1})
    log.rewrite([{"n": 5}, {"n": 6}])
    assert log.read() == [{"n": 5}, {"n": 6}]
    log.rewrite([])
    assert log.read() == [] and log.path.read_bytes() == b""


def _append_many(root: str, worker: int, count: int) -> None:
    log = make_log(Path(root))
    for i in range(count):
        log.append({"n": worker * 1000 + i, "pad": "x" * 3000})  # lines longer than a pipe buffer's atom


def test_appends_from_several_processes_all_land_whole(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = [r["n"] for r in make_log(tmp_path).read()]
    assert sorted(got) == sorted(w * 1000 + i for w in range(4) for i in range(40))
    for w in range(4):  # each writer's records in its own order
        mine = [n for n in got if n // 1000 == w]
        assert mine == sorted(mine)


APPEND_ONE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.media_assets.plumbing.test_append_log import make_log
make_log(Path(sys.argv[2])).append({"n": 99})
"""


def _waiters_on(path: Path) -> int:
    """Blocked lock requests on `path`'s inode (the `->` lines of /proc/locks)."""
    inode = os.stat(path).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and line.split()[-3].endswith(f":{inode}"))


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_an_append_that_waited_through_a_rewrite_lands_in_the_new_file(tmp_path: Path) -> None:
    """A rewrite replaces the file while holding the old file's lock; an append blocked on that lock
    must not write into the replaced (unlinked) file, where it would be lost."""
    import fcntl

    log = make_log(tmp_path)
    log.append({"n": 1})
    log.append({"n": 2})
    fd = os.open(log.path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a rewrite holds while it works
    child = subprocess.Popen([sys.executable, "-c", APPEND_ONE, str(ROOT), str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while _waiters_on(log.path) == 0:  # the child is blocked on the lock
            assert child.poll() is None, "the append did not wait for the lock"
            assert time.monotonic() < deadline, "the child never reached the lock"
            time.sleep(0.05)
        tmp = log.path.with_name(".new")
        tmp.write_bytes(encode({"n": 2}))
        os.replace(tmp, log.path)  # the rewrite's atomic replace, lock still held
    finally:
        os.close(fd)  # releases the old file's lock
    assert child.wait(60) == 0
    assert log.read() == [{"n": 2}, {"n": 99}]


def test_a_full_disk_leaves_the_log_as_it_was(small_fs: Path) -> None:  # noqa: F811 (the imported fixture)
    """On a real full filesystem (a small tmpfs): StoreFull naming the log and the record, the log
    unchanged by the failed append or rewrite, and both work once there is room again."""
    log = AppendLog(small_fs, small_fs / "log" / "records.jsonl", parse, item="test record", what="a test record")
    log.append({"n": 1})
    log.append({"n": 2})
    before = log.path.read_bytes()
    filler = fill(small_fs, 0)
    with pytest.raises(StoreFull) as err:
        log.append({"n": 3, "pad": "x" * (64 * 1024)})  # more than the log's last page holds
    assert str(err.value).startswith(f"store full: writing {log.path}") and "(a test record) needs " in str(err.value)
    assert log.path.read_bytes() == before
    with pytest.raises(StoreFull):
        log.rewrite_without(lambda r: r["n"] == 1)  # the new copy does not fit: the old one stays
    assert log.path.read_bytes() == before
    filler.unlink()
    log.append({"n": 3, "pad": "x" * (64 * 1024)})
    assert log.rewrite_without(lambda r: r["n"] == 1) == 1
    assert [r["n"] for r in log.read()] == [2, 3]


def test_lines_are_json_objects(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.append({"n": 1, "note": 'quote " and newline \n inside'})
    (line,) = log.path.read_bytes().splitlines()
    assert json.loads(line) == {"n": 1, "note": 'quote " and newline \n inside'}  # one line per record
