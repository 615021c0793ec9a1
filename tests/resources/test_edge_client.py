"""Embedded Qdrant on Qdrant Edge: search equal to exact search, the index built when due, filters,
and the one-time move of data written by qdrant-client's local mode (also when it is interrupted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from resources.edge_client import EDGE_DIR, LOCAL_MODE_BACKUP, EdgeClient, local_mode_data
from resources.qdrant import KEYWORD_INDEXES, QdrantResource, SparseVector, VectorPoint

ROOT = Path(__file__).resolve().parents[2]
DIM = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Points in clusters, as text embeddings are (uniform random points make every neighbour a tie)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), DIM))
    x = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write(q: QdrantResource, x: np.ndarray, per_partition: int = 100) -> None:
    with q.partition_writes("text", DIM) as writes:
        for start in range(0, len(x), per_partition):
            points = [
                VectorPoint(f"w{i}", x[i].tolist(), {"source": "ocr" if i % 3 == 0 else "transcript", "i": i})
                for i in range(start, min(len(x), start + per_partition))
            ]
            writes.replace(f"m{start // per_partition}", "search_index", "v1", points)


def test_search_returns_the_exact_top_10_once_the_hnsw_index_is_built(tmp_path: Path) -> None:
    x = clustered(5000)
    q = QdrantResource(path=str(tmp_path / "q"), index_after_points=2000)
    write(q, x)
    with q.client() as c:
        info = c.get_collection("text")
        assert info.points_count == 5000
        assert info.indexed_vectors_count >= 2000  # the write that crossed the threshold built it
        assert set(KEYWORD_INDEXES) <= set(info.payload_schema)
    rng = np.random.default_rng(1)
    for qi in rng.integers(0, len(x), 20):
        query = x[qi] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        exact = np.argsort(-(x @ query))[:10]
        hits = q.search("text", query.tolist(), limit=10)
        assert [h.payload["i"] for h in hits] == [int(i) for i in exact]


def test_filters_by_source_any_of_partitions_and_counts(tmp_path: Path) -> None:
    x = clustered(600)
    q = QdrantResource(path=str(tmp_path / "q"))
    write(q, x)
    hits = q.search("text", x[0].tolist(), limit=50, must={"source": "ocr", "partition": ["m0", "m2"]})
    assert hits and all(h.payload["source"] == "ocr" and h.payload["partition"] in ("m0", "m2") for h in hits)
    assert q.count("text") == 600 and q.count("text", partition="m1") == 100
    assert len(q.scroll_payloads("text", {"partition": "m5"})) == 100
    assert q.delete_partition("m5") == 100 and q.count("text") == 500


def write_local_mode(folder: Path, n: int) -> dict[str, list[float]]:
    """A folder as medialens wrote it before Edge: qdrant-client's local mode, two collections."""
    x = clustered(n)
    local = QdrantClient(path=str(folder))
    try:
        local.create_collection("text", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        local.create_collection("faces", vectors_config=models.VectorParams(size=4, distance=models.Distance.EUCLID))
        ids = [QdrantResource.point_id(f"m{i % 7}", "search_index", f"w{i}", "v1") for i in range(n)]
        local.upsert(
            "text",
            [
                models.PointStruct(
                    id=pid, vector=x[i].tolist(), payload={"partition": f"m{i % 7}", "asset": "search_index", "i": i}
                )
                for i, pid in enumerate(ids)
            ],
        )
        local.upsert("faces", [models.PointStruct(id=1, vector=[1.0, 2.0, 3.0, 4.0], payload={"partition": "m0"})])
    finally:
        local.close()
    return {pid: x[i].tolist() for i, pid in enumerate(ids)}


def sigkilled_by(code: str, folder: Path) -> None:
    """Run `code` (with os, signal, sys imported) in a new process on `folder`; it must die by SIGKILL."""
    argv = [sys.executable, "-c", "import os, signal, sys\n" + code, str(folder)]
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]


def test_local_mode_data_moves_to_edge_once_with_ids_vectors_and_payloads(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    before = write_local_mode(folder, 300)
    assert local_mode_data(folder)
    q = QdrantResource(path=str(folder))
    assert q.count("text") == 300 and q.count("faces") == 1  # the first open migrates
    assert not local_mode_data(folder) and (folder / LOCAL_MODE_BACKUP / "collection" / "text").is_dir()
    with q.client() as c:
        records, _ = c.scroll("text", limit=1000, with_payload=True, with_vectors=True)
        assert c.get_collection("faces").config.params.vectors.distance == models.Distance.EUCLID
        assert set(KEYWORD_INDEXES) <= set(c.get_collection("text").payload_schema)
    assert {str(r.id) for r in records} == set(before)
    for r in records:
        assert np.allclose(r.vector, before[str(r.id)], atol=1e-6)  # type: ignore[arg-type]
    # a re-analysis after the move replaces the migrated points (same deterministic ids)
    q.replace_partition("text", "m0", "search_index", "v2", [VectorPoint("w0", [1.0] + [0.0] * (DIM - 1))])
    assert q.count("text", partition="m0") == 1 and q.count("text") == 300 - 43 + 1


def test_a_migration_killed_midway_is_finished_by_the_next_open(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    write_local_mode(folder, 3000)
    # kill the migrating process as soon as its first collection has landed
    sigkilled_by(
        "import resources.edge_client as e\n"
        "real = e.os.rename\n"
        "def rename(a, b):\n"
        "    real(a, b)\n"
        "    if '.migrating-' in str(a):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "e.os.rename = rename\n"
        "from resources.qdrant import QdrantResource\n"
        "QdrantResource(path=sys.argv[1]).count('text')\n",
        folder,
    )
    landed = [d.name for d in (folder / EDGE_DIR).iterdir() if not d.name.startswith(".")]
    assert len(landed) == 1 and local_mode_data(folder)  # one moved, the old data still whole
    q = QdrantResource(path=str(folder))
    assert q.count("text") == 3000 and q.count("faces") == 1
    assert not local_mode_data(folder)
    assert not [d for d in (folder / EDGE_DIR).iterdir() if d.name.startswith(".")]


def test_a_process_killed_while_writing_leaves_a_shard_that_opens(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    q = QdrantResource(path=str(folder))
    write(q, clustered(200))
    sigkilled_by(
        "import numpy as np\n"
        "from resources.qdrant import QdrantResource, VectorPoint\n"
        "q = QdrantResource(path=sys.argv[1])\n"
        "with q.client() as c:\n"
        "    pts = [VectorPoint(f'n{i}', np.ones(64).tolist()) for i in range(50)]\n"
        "    q.replace_partition('text', 'new', 'search_index', 'v1', pts)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
        folder,
    )
    # the write-ahead log replays what was written before the kill; the lock died with the process
    assert q.count("text") == 250 and q.count("text", partition="new") == 50


def test_an_unsupported_filter_names_itself(tmp_path: Path) -> None:
    c = EdgeClient(tmp_path)
    c.create_collection("t", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    try:
        with pytest.raises(TypeError, match="not supported"):
            c.count(
                "t", count_filter=models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="x"))])
            )
    finally:
        c.close()


def test_sparse_vectors_are_written_searched_and_added_to_an_older_collection(tmp_path: Path) -> None:
    q = QdrantResource(path=str(tmp_path / "q"))
    x = clustered(3)
    # a collection from before sparse vectors, with a point that has none
    q.ensure_collection("text", DIM)
    q.replace_partition("text", "old", "search_index", "v1", [VectorPoint("w0", x[0].tolist())])
    assert q.search_sparse("text", "words", SparseVector([1], [1.0])) == []  # no such vector yet: no hits
    with q.partition_writes("text", DIM, sparse=["words"]) as writes:
        writes.replace(
            "new",
            "search_index",
            "v1",
            [
                VectorPoint("a", x[1].tolist(), {"t": "a"}, {"words": SparseVector([1, 7], [1.0, 2.0])}),
                VectorPoint("b", x[2].tolist(), {"t": "b"}, {"words": SparseVector([7], [1.0])}),
                VectorPoint("c", x[0].tolist(), {"t": "c"}),  # no words (only stop words): dense only
            ],
        )
    with q.client() as c:
        assert "words" in c.get_collection("text").config.params.sparse_vectors
    hits = q.search_sparse("text", "words", SparseVector([1], [1.0]))
    assert [h.payload["t"] for h in hits] == ["a"]
    hits = q.search_sparse("text", "words", SparseVector([7], [1.0]), must={"partition": "new"})
    assert {h.payload["t"] for h in hits} == {"a", "b"}
    assert q.search_sparse("text", "words", SparseVector([], [])) == []
    assert q.count("text") == 4 and q.search("text", x[0].tolist(), limit=1)[0].payload["partition"] in ("old", "new")


def test_sparse_vectors_a_collection_is_not_written_with_are_refused(tmp_path: Path) -> None:
    q = QdrantResource(path=str(tmp_path / "q"))
    with pytest.raises(ValueError, match="sparse vectors"), q.partition_writes("text", 2) as writes:
        writes.replace("k", "a", "v", [VectorPoint("i", [1.0, 0.0], {}, {"words": SparseVector([1], [1.0])})])
    with pytest.raises(ValueError, match="ragged"), q.partition_writes("text", 2, sparse=["words"]) as writes:
        writes.replace("k", "a", "v", [VectorPoint("i", [1.0, 0.0], {}, {"words": SparseVector([1, 2], [1.0])})])
    assert q.count("text") == 0
