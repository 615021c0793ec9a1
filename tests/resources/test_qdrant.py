"""QdrantResource against a real embedded Qdrant in tmp_path (no mocks): deterministic ids, partition
replacement without duplicates, search filters, the folder lock shared between processes (and the
holder it names when a process hangs with it), interrupts during writes, and a server that is down."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagster import EnvVar, StaticPartitionsDefinition, asset, materialize
from dagster._core.errors import DagsterExecutionInterruptedError
from qdrant_client import QdrantClient

import resources.qdrant as qdrant_module
from resources.edge_client import EdgeClient
from resources.qdrant import Hit, LockHolder, QdrantResource, QdrantUnavailable, VectorPoint, holder_note
from resources.workers import Worker, hostname, this_worker
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def q(tmp_path: Path) -> QdrantResource:
    r = QdrantResource(path=str(tmp_path / "qdrant"))
    r.ensure_collection("text", 4)
    return r


def pts(n: int, offset: float = 0.0) -> list[VectorPoint]:
    return [VectorPoint(f"seg{i}", [1.0, float(i) + offset, 0.5, 0.0], {"text": f"segment {i}"}) for i in range(n)]


def hold_lock_cmd(lock: Path, seconds: float) -> list[str]:
    """A separate process that takes the flock, says so, and keeps it for `seconds`."""
    code = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    return [sys.executable, "-c", code, str(lock), str(seconds)]


# -- ids ------------------------------------------------------------------------------------------
def test_point_ids_are_deterministic_and_distinct_per_field() -> None:
    a = QdrantResource.point_id("k", "transcript", "seg1", "v1")
    assert a == QdrantResource.point_id("k", "transcript", "seg1", "v1")
    assert uuid.UUID(a).version == 5
    others = {
        QdrantResource.point_id("k2", "transcript", "seg1", "v1"),
        QdrantResource.point_id("k", "ocr_text", "seg1", "v1"),
        QdrantResource.point_id("k", "transcript", "seg2", "v1"),
        QdrantResource.point_id("k", "transcript", "seg1", "v2"),
    }
    assert a not in others and len(others) == 4


# -- collections ----------------------------------------------------------------------------------
def test_ensure_collection_is_idempotent_and_checks_size_and_metric(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(2))
    q.ensure_collection("text", 4)
    assert q.count("text") == 2  # calling it again keeps the points
    with pytest.raises(ValueError, match=r"'text' holds 4-d vectors, not 8-d"):
        q.ensure_collection("text", 8)
    with pytest.raises(ValueError, match="distance Cosine, asked for Dot"):
        q.ensure_collection("text", 4, distance="Dot")
    with pytest.raises(ValueError, match="unknown distance"):
        q.ensure_collection("other", 4, distance="cosine-ish")


# -- replace_partition ----------------------------------------------------------------------------
def test_replacing_twice_never_duplicates(q: QdrantResource) -> None:
    assert q.replace_partition("text", "a-1", "transcript", "v1", pts(5)) == 5
    assert q.replace_partition("text", "a-1", "transcript", "v1", pts(5, offset=0.1)) == 5
    assert q.count("text", partition="a-1") == 5


def test_a_new_model_version_replaces_the_old_points(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(5))
    q.replace_partition("text", "a-1", "transcript", "v2", pts(5))
    payloads = q.scroll_payloads("text", {"partition": "a-1"})
    assert len(payloads) == 5 and {p["model_version"] for p in payloads} == {"v2"}
    # the caller's payload is kept, and the scope fields are always added
    assert {p["text"] for p in payloads} == {f"segment {i}" for i in range(5)}
    assert all(p["partition"] == "a-1" and p["asset"] == "transcript" for p in payloads)


def test_fewer_items_drop_the_extra_and_an_empty_list_removes_all(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(5))
    assert q.replace_partition("text", "a-1", "transcript", "v1", pts(2)) == 2
    assert sorted(p["text"] for p in q.scroll_payloads("text")) == ["segment 0", "segment 1"]
    assert q.replace_partition("text", "a-1", "transcript", "v1", []) == 0
    assert q.count("text", partition="a-1") == 0


def test_partitions_and_assets_are_independent(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(3))
    q.replace_partition("text", "b-2", "transcript", "v1", pts(4))
    q.replace_partition("text", "a-1", "ocr_text", "v1", pts(2))
    q.replace_partition("text", "a-1", "transcript", "v2", pts(1))
    assert q.count("text", partition="b-2") == 4
    assert q.count("text", partition="a-1", asset="ocr_text") == 2
    assert q.count("text", partition="a-1", asset="transcript") == 1
    assert q.count("text") == 7


def test_upserts_in_batches(q: QdrantResource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qdrant_module, "UPSERT_BATCH", 2)
    assert q.replace_partition("text", "a-1", "transcript", "v1", pts(7)) == 7
    assert q.count("text") == 7


def test_bad_input_is_refused_before_anything_is_written(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(3))
    with pytest.raises(ValueError, match="ensure_collection"):
        q.replace_partition("nope", "a-1", "transcript", "v1", pts(1))
    with pytest.raises(ValueError, match="dimension 3 for item 'bad', but Qdrant collection 'text' has dimension 4"):
        q.replace_partition("text", "a-1", "transcript", "v2", [*pts(2), VectorPoint("bad", [1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="appears twice"):
        q.replace_partition("text", "a-1", "transcript", "v2", [*pts(2), *pts(1)])
    with pytest.raises(ValueError, match="NaN"):
        q.replace_partition("text", "a-1", "transcript", "v2", [VectorPoint("n", [float("nan"), 0, 0, 1])])
    payloads = q.scroll_payloads("text")
    assert len(payloads) == 3 and {p["model_version"] for p in payloads} == {"v1"}


# -- delete ---------------------------------------------------------------------------------------
def test_a_steps_writes_go_in_one_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = QdrantResource(path=str(tmp_path / "q"))
    opened: list[str] = []
    real_init = EdgeClient.__init__

    def counting_init(self: EdgeClient, folder: str | Path, *a: Any) -> None:
        opened.append(str(folder))
        real_init(self, folder, *a)

    monkeypatch.setattr(EdgeClient, "__init__", counting_init)
    with r.partition_writes("faces", 4, distance="Euclid") as writes:
        for i in range(20):
            assert writes.replace(f"m-{i}", "faces", "v1", pts(3)) == 3
        assert not opened  # nothing written while the step works
    assert len(opened) == 1  # the collection created and 20 partitions written in one open
    assert r.count("faces") == 60
    monkeypatch.setattr(EdgeClient, "__init__", real_init)
    with r.client() as c:
        assert c.get_collection("faces").config.params.vectors.distance.value == "Euclid"  # type: ignore[union-attr]


def test_batched_writes_replace_drop_and_survive_a_failed_partition(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(5))
    q.replace_partition("text", "b-2", "transcript", "v1", pts(2))
    with pytest.raises(RuntimeError, match="partition c-3 failed"), q.partition_writes("text") as writes:
        writes.replace("a-1", "transcript", "v2", pts(2))  # replaces all five old points
        writes.drop("b-2")
        with pytest.raises(ValueError, match="NaN"):  # a bad vector fails its own partition at once
            writes.replace("c-3", "transcript", "v2", [VectorPoint("n", [float("nan"), 0, 0, 1])])
        raise RuntimeError("partition c-3 failed")  # e.g. for_each_partition's Failure
    # the partitions that succeeded before the step failed were still written
    assert sorted(p["model_version"] for p in q.scroll_payloads("text", must={"partition": "a-1"})) == ["v2", "v2"]
    assert q.scroll_payloads("text", must={"partition": "b-2"}) == []
    assert q.scroll_payloads("text", must={"partition": "c-3"}) == []


def test_batched_writes_refuse_another_dimension_before_writing(q: QdrantResource) -> None:
    with pytest.raises(ValueError, match="holds 4-d vectors, not 3-d"), q.partition_writes("text") as writes:
        writes.replace("a-1", "transcript", "v1", [VectorPoint("x", [1.0, 0.0, 0.0])])  # 3-d, collection is 4-d
    assert q.count("text") == 0
    with q.partition_writes("text", 4) as writes, pytest.raises(ValueError, match="dimension 3"):
        writes.replace("a-1", "transcript", "v1", [VectorPoint("x", [1.0, 0.0, 0.0])])


def test_delete_partition_across_collections(q: QdrantResource) -> None:
    q.ensure_collection("faces", 3)
    q.replace_partition("text", "a-1", "transcript", "v1", pts(3))
    q.replace_partition("faces", "a-1", "faces", "v1", [VectorPoint("f0", [1, 0, 0], {})])
    q.replace_partition("text", "b-2", "transcript", "v1", pts(2))
    q.replace_partition("faces", "b-2", "faces", "v1", [VectorPoint("f0", [0, 1, 0], {})])
    assert q.delete_partition("a-1") == 4
    assert q.count("text", partition="a-1") == 0 and q.count("faces", partition="a-1") == 0
    assert q.count("text", partition="b-2") == 2 and q.count("faces", partition="b-2") == 1
    assert q.delete_partition("b-2", collection="faces") == 1
    assert q.count("text", partition="b-2") == 2  # only the named collection
    assert q.delete_partition("b-2", collection="missing") == 0
    assert q.delete_partition("nothing-here") == 0


# -- reads ----------------------------------------------------------------------------------------
def test_search_finds_the_nearest_with_payload_and_respects_must(q: QdrantResource) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", [VectorPoint("x", [1, 0, 0, 0], {"text": "crane"})])
    q.replace_partition("text", "b-2", "transcript", "v1", [VectorPoint("y", [0, 1, 0, 0], {"text": "helmet"})])
    hits = q.search("text", [0.9, 0.1, 0, 0], limit=2)
    assert all(isinstance(h, Hit) for h in hits)
    assert [h.payload["text"] for h in hits] == ["crane", "helmet"] and hits[0].score > hits[1].score
    assert hits[0].id == QdrantResource.point_id("a-1", "transcript", "x", "v1")
    assert hits[0].payload == {"text": "crane", "partition": "a-1", "asset": "transcript", "model_version": "v1"}
    only_b = q.search("text", [1, 0, 0, 0], must={"partition": "b-2"})
    assert [h.payload["text"] for h in only_b] == ["helmet"]
    assert q.search("text", [1, 0, 0, 0], must={"partition": "b-2", "model_version": "v9"}) == []
    assert len(q.search("text", [1, 0, 0, 0], must={"partition": ["a-1", "b-2"]})) == 2
    assert q.search("text", [1, 0, 0, 0], limit=1)[0].payload["text"] == "crane"


def test_missing_collections_read_as_empty(q: QdrantResource) -> None:
    assert q.search("missing", [1, 0, 0, 0]) == []
    assert q.count("missing") == 0
    assert q.scroll_payloads("missing") == []


def test_scroll_payloads_pages_and_limits(q: QdrantResource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qdrant_module, "SCROLL_PAGE", 3)
    q.replace_partition("text", "a-1", "transcript", "v1", pts(8))
    q.replace_partition("text", "b-2", "transcript", "v1", pts(2))
    assert len(q.scroll_payloads("text", {"partition": "a-1"})) == 8
    assert len(q.scroll_payloads("text", limit=5)) == 5
    assert len(q.scroll_payloads("text")) == 10


# -- the folder lock ------------------------------------------------------------------------------
def test_the_client_is_closed_after_each_call(q: QdrantResource, tmp_path: Path) -> None:
    q.replace_partition("text", "a-1", "transcript", "v1", pts(2))
    # the shard's own lock is free again: a plain client opens it without waiting or failing
    raw = EdgeClient(tmp_path / "qdrant")
    try:
        assert raw.count("text").count == 2
    finally:
        raw.close()


def test_two_resources_on_one_folder_take_turns(tmp_path: Path) -> None:
    a = QdrantResource(path=str(tmp_path / "q"))
    b = QdrantResource(path=str(tmp_path / "q"))
    a.ensure_collection("text", 4)
    b.replace_partition("text", "k", "t", "v", pts(2))
    assert a.count("text") == 2
    a.replace_partition("text", "k", "t", "v", pts(3))
    assert b.count("text") == 3


def test_nested_calls_reuse_the_open_client(tmp_path: Path) -> None:
    r = QdrantResource(path=str(tmp_path / "q"), lock_timeout_s=1.0)
    with r.client() as outer:
        r.ensure_collection("text", 4)  # would wait on our own lock and time out without reuse
        r.replace_partition("text", "k", "t", "v", pts(2))
        with r.client() as inner:
            assert inner is outer
        assert r.count("text") == 2
    assert r.count("text") == 2  # and it was released at the end


def test_waits_for_a_lock_held_by_another_process(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    folder.mkdir()
    holder = subprocess.Popen(hold_lock_cmd(folder / ".medialens.lock", 2.0), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        r = QdrantResource(path=str(folder))
        with r.client() as c:
            waited = time.monotonic() - started
            assert c.get_collections().collections == []
        assert holder.poll() is not None  # we only got in once the other process had finished
        assert 1.0 <= waited < 30
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_lock_never_released_fails_with_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    folder.mkdir()
    holder = subprocess.Popen(hold_lock_cmd(folder / ".medialens.lock", 30.0), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = QdrantResource(path=str(folder), lock_timeout_s=0.5)
        with pytest.raises(TimeoutError, match=str(folder / ".medialens.lock")):
            r.count("text")
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_server_mode_takes_no_folder_lock(tmp_path: Path) -> None:
    # nothing listens there: the client connects lazily, so only the mode is checked, not a server
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a version check that tried to reach the server
        r = QdrantResource(url="http://127.0.0.1:9", path=str(tmp_path / "unused"))
        with r.client() as c:
            assert isinstance(c, QdrantClient)
    assert not (tmp_path / "unused").exists()


def _write_partition(args: tuple[str, str]) -> int:
    folder, partition = args
    r = QdrantResource(path=folder)
    total = 0
    for version in ("v1", "v2"):
        total = r.replace_partition("text", partition, "transcript", version, pts(20))
    return total


def test_concurrent_processes_all_get_their_turn(tmp_path: Path) -> None:
    folder = str(tmp_path / "q")
    QdrantResource(path=folder).ensure_collection("text", 4)
    partitions = [f"p{i}" for i in range(3)]
    # spawn, like Dagster's multiprocess executor: separate interpreters competing for the folder
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        # a timeout, so a worker that dies fails the test instead of hanging the pool forever
        assert pool.map_async(_write_partition, [(folder, p) for p in partitions]).get(timeout=180) == [20] * 3
    r = QdrantResource(path=folder)
    assert r.count("text") == 60
    assert {p["model_version"] for p in r.scroll_payloads("text")} == {"v2"}


# -- Dagster --------------------------------------------------------------------------------------
def test_usable_from_a_partitioned_dagster_asset(tmp_path: Path) -> None:
    @asset(partitions_def=StaticPartitionsDefinition(["k1", "k2"]))
    # `context` stays unannotated: under `from __future__ import annotations` Dagster would see the
    # string "AssetExecutionContext" and reject it
    def transcript_vectors(context, qdrant: QdrantResource) -> None:
        qdrant.ensure_collection("text", 4)
        written = qdrant.replace_partition("text", context.partition_key, "transcript_vectors", "v1", pts(3))
        context.add_output_metadata({"points": written})

    r = QdrantResource(path=str(tmp_path / "q"))
    for key in ("k1", "k2", "k1"):
        result = materialize([transcript_vectors], resources={"qdrant": r}, partition_key=key)
        assert result.success
    assert r.count("text", partition="k1") == 3 and r.count("text") == 6


# -- who holds the lock ---------------------------------------------------------------------------
def lock_record(folder: Path) -> LockHolder | None:
    return LockHolder.decode((folder / ".medialens.lock").read_bytes())


def hung_holder(folder: Path) -> subprocess.Popen[str]:
    """A medialens process that takes the lock through the resource and then stops (SIGSTOP): alive,
    holding the lock, doing nothing - what a hung run looks like from outside."""
    code = (
        "import os, signal, sys\n"
        "from resources.qdrant import QdrantResource\n"
        "session = QdrantResource(path=sys.argv[1]).client()\n"
        "session.__enter__()  # kept in a variable: a collected generator would release the lock\n"
        "print('held', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(folder), "hung-holder"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the holder did not stop"
        time.sleep(0.01)
    return child


def test_a_hung_holder_is_named_and_its_death_frees_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    child = hung_holder(folder)
    try:
        record = lock_record(folder)
        assert record is not None and record.worker.pid == child.pid and record.worker.host == hostname()
        assert record.command.endswith("hung-holder")

        r = QdrantResource(path=str(folder), lock_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(TimeoutError) as err:
            r.count("text")
        assert time.monotonic() - started < 5
        message = str(err.value)
        assert f"still locked after 1 s by pid {child.pid} on host {hostname()}" in message, message
        assert "hung-holder" in message and f"kill {child.pid}" in message and "holding it since " in message
        assert str(folder / ".medialens.lock") in message and "QDRANT_URL" in message

        child.kill()  # a stopped process dies of SIGKILL too, and the kernel drops its flock at once
        child.wait(timeout=10)
        started = time.monotonic()
        assert r.count("text") == 0
        assert time.monotonic() - started < 1
        assert (folder / ".medialens.lock").read_bytes() == b""  # our own record, cleared on release
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_stale_record_and_a_holder_that_never_identified_itself_are_said_so(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    folder.mkdir()
    dead = subprocess.Popen(["true"])  # a pid that has certainly exited
    dead.wait()
    stale = LockHolder(Worker(hostname(), dead.pid, time.time() - 60), "medialens analyse old.mp4", time.time() - 50)
    (folder / ".medialens.lock").write_bytes(stale.encode())  # left behind by a killed holder
    holder = subprocess.Popen(hold_lock_cmd(folder / ".medialens.lock", 30.0), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError) as err:
            QdrantResource(path=str(folder), lock_timeout_s=0.5).count("text")
        message = str(err.value)
        assert "has not identified itself" in message, message
        assert f"still names pid {dead.pid} on host {hostname()}" in message and "which has exited" in message
        assert f"by pid {dead.pid}" not in message  # never blamed on the dead process
        if Path("/proc/locks").exists():  # Linux names the real holder
            assert f"by pid {holder.pid} on host" in message and f"kill {holder.pid}" in message, message
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_long_wait_is_logged_once_with_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(qdrant_module, "LOCK_WAIT_LOG_S", 0.3)
    folder = tmp_path / "q"
    folder.mkdir()
    holder = subprocess.Popen(hold_lock_cmd(folder / ".medialens.lock", 1.5), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.WARNING, logger="medialens"):
            assert QdrantResource(path=str(folder), lock_timeout_s=30).count("text") == 0
    finally:
        holder.kill()
        holder.wait(timeout=10)
    waiting = [r.getMessage() for r in caplog.records if "waiting for the embedded Qdrant lock" in r.getMessage()]
    assert len(waiting) == 1, caplog.text
    assert f"held by pid {holder.pid}" in waiting[0] or "not identified itself" in waiting[0]
    assert any("got the embedded Qdrant lock" in r.getMessage() for r in caplog.records)


def test_the_record_names_this_process_its_note_and_its_dagster_run(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    r = QdrantResource(path=str(folder))
    with holder_note("medialens forget talk-1"), r.client():
        record = lock_record(folder)
        assert record is not None and record.worker == this_worker() and record.note == "medialens forget talk-1"
        assert abs(record.since - time.time()) < 60 and record.run_id == ""
    assert (folder / ".medialens.lock").read_bytes() == b""

    seen: list[LockHolder | None] = []

    @asset
    def holds_the_lock(context, qdrant: QdrantResource) -> None:
        with qdrant.client():
            seen.append(lock_record(folder))
        context.add_output_metadata({"run": context.run_id})

    result = materialize([holds_the_lock], resources={"qdrant": r})
    assert result.success and seen[0] is not None
    assert seen[0].run_id == result.run_id and seen[0].worker == this_worker()
    assert f"run {result.run_id[:8]}" in seen[0].describe()


# -- interrupts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("interrupt", ["sigint", "dagster"])
def test_an_interrupted_step_writes_no_points(q: QdrantResource, interrupt: str) -> None:
    """The step is stopping and records no manifests: its collected points must not appear either."""
    q.replace_partition("text", "a-1", "transcript", "v1", pts(5))
    expected: type[BaseException] = KeyboardInterrupt if interrupt == "sigint" else DagsterExecutionInterruptedError
    with pytest.raises(expected), q.partition_writes("text") as writes:
        writes.replace("a-1", "transcript", "v2", pts(2))
        writes.replace("b-2", "transcript", "v2", pts(3))
        if interrupt == "sigint":
            signal.raise_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt here
        else:
            raise DagsterExecutionInterruptedError()  # what Dagster raises in asset code on Ctrl-C/SIGTERM
    payloads = q.scroll_payloads("text")
    assert len(payloads) == 5 and {p["model_version"] for p in payloads} == {"v1"}


class SignalOnUpsert:
    """Once armed, sends SIGINT to this process from inside the second upsert (the real upsert still
    runs): an interrupt that lands in the middle of a partition's writes, every time."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.armed = False

    def arm(self) -> None:
        self.calls, self.armed = [], True


@pytest.fixture
def signal_on_upsert(monkeypatch: pytest.MonkeyPatch) -> SignalOnUpsert:
    spy = SignalOnUpsert()
    real_upsert, real_delete = EdgeClient.upsert, EdgeClient.delete

    def upsert(self: EdgeClient, collection_name: str, points: Any, **kw: Any) -> Any:
        spy.calls.append(f"upsert {points[0].payload['partition']}")
        if spy.armed and len(spy.calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return real_upsert(self, collection_name, points=points, **kw)

    def delete(self: EdgeClient, collection_name: str, **kw: Any) -> Any:
        spy.calls.append("delete")
        return real_delete(self, collection_name, **kw)

    monkeypatch.setattr(EdgeClient, "upsert", upsert)
    monkeypatch.setattr(EdgeClient, "delete", delete)
    return spy


def test_an_interrupt_mid_partition_arrives_once_it_is_replaced(
    q: QdrantResource, monkeypatch: pytest.MonkeyPatch, signal_on_upsert: SignalOnUpsert
) -> None:
    # ~10 ms a point in embedded Qdrant: a partition that takes a second or two to write
    monkeypatch.setattr(qdrant_module, "UPSERT_BATCH", 20)
    q.replace_partition("text", "a-1", "transcript", "v1", pts(120))
    q.replace_partition("text", "b-2", "transcript", "v1", pts(3))
    signal_on_upsert.arm()
    with pytest.raises(KeyboardInterrupt), q.partition_writes("text") as writes:
        writes.replace("a-1", "transcript", "v2", pts(120, offset=0.5))
        writes.replace("b-2", "transcript", "v2", pts(3))
    # a-1 was finished (all six batches, then the stale delete), and the interrupt came right after:
    # b-2 was not started
    assert signal_on_upsert.calls == ["upsert a-1"] * 6 + ["delete"], signal_on_upsert.calls
    a1 = q.scroll_payloads("text", {"partition": "a-1"})
    assert len(a1) == 120 and {p["model_version"] for p in a1} == {"v2"}
    b2 = q.scroll_payloads("text", {"partition": "b-2"})
    assert len(b2) == 3 and {p["model_version"] for p in b2} == {"v1"}


def test_sigterm_mid_partition_still_replaces_it_whole(tmp_path: Path) -> None:
    """SIGTERM's default action (terminate) waits for the partition too: a separate process is
    killed by it right after the partition is complete."""
    folder = tmp_path / "q"
    r = QdrantResource(path=str(folder))
    r.ensure_collection("text", 4)
    r.replace_partition("text", "a-1", "transcript", "v1", pts(120))
    code = (
        "import os, signal, sys\n"
        "from resources.edge_client import EdgeClient as QdrantClient\n"
        "import resources.qdrant as qm\n"
        "from tests.resources.test_qdrant import pts\n"
        "qm.UPSERT_BATCH = 20\n"
        "real, calls = QdrantClient.upsert, []\n"
        "def upsert(self, name, points, **kw):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self, name, points=points, **kw)\n"
        "QdrantClient.upsert = upsert\n"
        "q = qm.QdrantResource(path=sys.argv[1])\n"
        "with q.partition_writes('text') as writes:\n"
        "    writes.replace('a-1', 'transcript', 'v2', pts(120, offset=0.5))\n"
        "    writes.replace('b-2', 'transcript', 'v2', pts(3))\n"
        "print('not reached', flush=True)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGTERM, (p.returncode, p.stderr[-2000:])
    assert "not reached" not in p.stdout
    a1 = r.scroll_payloads("text", {"partition": "a-1"})
    assert len(a1) == 120 and {x["model_version"] for x in a1} == {"v2"}
    assert r.count("text", partition="b-2") == 0


# -- a Qdrant server that is down or goes away ----------------------------------------------------
def test_a_server_that_is_down_fails_with_the_url_and_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = QdrantResource(url=url)
    started = time.monotonic()
    with pytest.raises(QdrantUnavailable) as err, r.partition_writes("text", 4) as writes:
        writes.replace("a-1", "search_index", "v1", pts(2))
        writes.replace("b-2", "search_index", "v1", pts(2))
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert message.startswith(f"Qdrant server at {url} is unreachable (connection refused) while writing 2 "), message
    assert "0 of 2 written; not written (or only partly, beside their previous vectors): a-1, b-2." in message
    assert "re-materialise search_index" in message, message
    assert isinstance(err.value, ConnectionError) and err.value.url == url and err.value.reason == "connection refused"

    with pytest.raises(QdrantUnavailable, match=rf"^Qdrant server at {url} is unreachable \(connection refused\)$"):
        r.search("text", [1.0, 0.0, 0.0, 0.0])


@pytest.fixture
def vanishing_server() -> Iterator[str]:
    """A server that accepts each connection and closes it without answering: a Qdrant server that
    crashes in the middle of a request."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(65536)  # the request arrives, no answer ever leaves

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_server_that_goes_away_mid_request_is_named_too(vanishing_server: str) -> None:
    r = QdrantResource(url=vanishing_server)
    with pytest.raises(QdrantUnavailable) as err:
        r.replace_partition("text", "a-1", "transcript", "v1", pts(2))
    assert str(err.value).startswith(f"Qdrant server at {vanishing_server} is unreachable (server disconnected")


def test_an_unresolved_env_var_url_is_read_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """build_resources passes EnvVar("QDRANT_URL"), which only Dagster resolves; the CLI's search
    and forget use the resource directly, and must reach the server it names."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("QDRANT_URL", url)
    r = QdrantResource(url=EnvVar("QDRANT_URL"))
    assert not r.embedded and r.server_url == url
    with pytest.raises(QdrantUnavailable, match=rf"^Qdrant server at {url} is unreachable \(connection refused\)$"):
        r.count("text")
