"""QdrantResource against a real embedded Qdrant in tmp_path (no mocks): deterministic ids, partition
replacement without duplicates, search filters, and the folder lock shared between processes."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest
from dagster import StaticPartitionsDefinition, asset, materialize
from qdrant_client import QdrantClient

import resources.qdrant as qdrant_module
from resources.qdrant import Hit, QdrantResource, VectorPoint


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
    real_init = QdrantClient.__init__

    def counting_init(self: QdrantClient, *a: object, **kw: object) -> None:
        opened.append(str(kw.get("path")))
        real_init(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(QdrantClient, "__init__", counting_init)
    with r.partition_writes("faces", 4, distance="Euclid") as writes:
        for i in range(20):
            assert writes.replace(f"m-{i}", "faces", "v1", pts(3)) == 3
        assert not opened  # nothing written while the step works
    assert len(opened) == 1  # the collection created and 20 partitions written in one open
    assert r.count("faces") == 60
    monkeypatch.setattr(QdrantClient, "__init__", real_init)
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
    # Qdrant's own folder lock is free again: a plain client opens it without waiting or failing
    raw = QdrantClient(path=str(tmp_path / "qdrant"))
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
