"""Search at library scale: latency and recall of `QdrantResource.search` over N synthetic text points.

`medialens search` opens the embedded Qdrant folder (Qdrant Edge shards since 2026-12; before,
qdrant-client's local mode, which loaded every point per open and scanned them all) and queries it.
This fills a fresh folder (or a server collection, `--url`) with N seeded 512-d unit vectors carrying
the real payload of the `text` collection (partition, asset, model_version, source, item, start,
end, text; `--per-media` points per media file), written through the project's
`QdrantResource.partition_writes` as `search_index` writes them, 20 media per session (timed), then
measures:

- fresh: what one `medialens search` costs, in new processes that open the resource and search
  once (`fresh_p50_ms`: opening + search in the process; `fresh_process_p50_ms`: the whole process
  with its imports; `fresh_rss_mib`: its peak memory);
- warm: repeated searches with the client held open (`p50_ms`, `p95_ms`; random unit queries and
  near-duplicates of stored vectors), with the `source` filter of `search --kind`, and the words
  (BM25 sparse) half of the hybrid ranking (`words_p50_ms`; texts and 2-4-word queries drawn from a
  20 000-word Zipf vocabulary);
- recall@10 of those searches against exact numpy search over the same vectors.

The vectors are clustered with a low intrinsic dimension (`--latent-dim`, see `draw`), as real
embeddings are; uniform random vectors (`--latent-dim 0`) make any HNSW index look broken.

Writing through the resource replaces each partition (upsert, then a filtered delete; the HNSW
index is built by the write that makes it due). Local mode's filtered delete scanned every point, so
indexing grew quadratically there; should it ever be slow again, after `--index-budget-s`
the rest is written straight through the client (upserts only): `index_s` is then extrapolated from
the measured rate (`index_s_extrapolated`: true) and the searches still run at full size.

Prints one JSON line per size.

Usage: .venv/bin/python bench/search.py [--points 10000 100000] [--queries 30] [--fresh 5]
                                        [--index-budget-s 300] [--latent-dim 64] [--url http://localhost:6333]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from media_assets.analysis.words import WORDS_VECTOR, document_words, query_words
from resources.qdrant import QdrantResource, SparseVector, VectorPoint

ROOT = Path(__file__).resolve().parent.parent
DIM = 512
COLLECTION = "text"  # media_assets.assets.search_index.COLLECTION (not imported: it loads the settings and model code)
ASSET = "search_index"
VERSION = "bench-v1"
SOURCES = ("transcript", "ocr", "tags", "summary")
VOCABULARY = 20_000  # distinct words of the synthetic texts, drawn Zipf-like as words in speech are

# What the fresh process runs: `medialens search` less the text model (a stored vector is the query).
CHILD = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from resources.qdrant import QdrantResource
t1 = time.perf_counter()
url, path, collection, query_file, index = sys.argv[1:6]
vector = np.load(query_file)[int(index)]
t2 = time.perf_counter()
qdrant = QdrantResource(url=url or None, path=path)
hits = qdrant.search(collection, vector, limit=30)
t3 = time.perf_counter()
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print("RESULT " + json.dumps({"import_s": t1 - t0, "search_s": t3 - t2, "hits": [h.id for h in hits],
      "rss_mib": hwm / 1024}))
"""


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def draw(rng: np.random.Generator, media: np.ndarray, media_count: int, latent: int, seed: int) -> np.ndarray:
    """Unit vectors of moments of the given media. `latent` 0: uniform on the sphere, where every
    point is about as far from a query as every other, which no ANN index (HNSW) ranks well and no
    real embedding looks like. Otherwise a `latent`-dimensional structure in 512-d (a fixed random
    basis), each media's moments around its own topic, plus a little noise: clustered and of low
    intrinsic dimension, like real text embeddings (for exact search the two are the same)."""
    if latent <= 0:
        return unit(rng.standard_normal((len(media), DIM), dtype=np.float32))
    basis = np.random.default_rng(seed + 7).standard_normal((latent, DIM), dtype=np.float32)
    topics = np.random.default_rng(seed + 8).standard_normal((media_count, latent), dtype=np.float32)
    out = np.empty((len(media), DIM), np.float32)
    for start in range(0, len(media), 65536):  # bounded temporaries at 1M points
        part = media[start : start + 65536]
        z = topics[part] + rng.standard_normal((len(part), latent), dtype=np.float32)
        noise = rng.standard_normal((len(part), DIM), dtype=np.float32) * np.float32(0.15 * np.sqrt(latent))
        out[start : start + len(part)] = unit(z @ basis + noise)
    return out


def synthetic(
    n: int, per_media: int, latent: int, seed: int
) -> tuple[np.ndarray, list[tuple[str, str, dict[str, Any]]]]:
    """N unit vectors and, for each, (partition, item, payload) as `search_index` writes them."""
    rng = np.random.default_rng(seed)
    media_count = -(-n // per_media)
    vectors = draw(rng, np.arange(n) // per_media, media_count, latent, seed)
    vocab = np.array([f"w{k}" for k in range(VOCABULARY)])
    meta: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(n):
        media, j = divmod(i, per_media)
        source = SOURCES[0] if j < per_media * 0.7 else SOURCES[1] if j < per_media - 2 else SOURCES[2 + j % 2]
        timed = source in ("transcript", "ocr")
        start = float(j * 4) if timed else None
        text = " ".join(vocab[zipf_ranks(rng, 8 if source == "ocr" else 30)])
        payload = {"source": source, "item": f"i-{j}", "start": start, "end": start + 8 if start is not None else None}
        meta.append((f"m{media:06d}.mp4", f"{source}:i-{j}", {**payload, "text": text}))
    return vectors, meta


def zipf_ranks(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.minimum(rng.zipf(1.2, count), VOCABULARY) - 1


def word_queries(count: int, seed: int) -> list[str]:
    """Queries of 2-4 words, drawn like the texts' words (mostly frequent ones, some rare)."""
    rng = np.random.default_rng(seed + 2)
    return [" ".join(f"w{k}" for k in zipf_ranks(rng, int(rng.integers(2, 5)))) for _ in range(count)]


def queries(vectors: np.ndarray, count: int, near: int, per_media: int, latent: int, seed: int) -> np.ndarray:
    """`count - near` new vectors drawn like the stored ones (a random media's topic) and `near`
    stored vectors with a little noise."""
    rng = np.random.default_rng(seed + 1)
    media_count = -(-len(vectors) // per_media)
    drawn = draw(rng, rng.integers(0, media_count, count - near), media_count, latent, seed)
    picks = vectors[rng.choice(len(vectors), near, replace=False)]
    near_q = picks + rng.standard_normal(picks.shape, dtype=np.float32) * (0.3 / np.sqrt(DIM))
    return unit(np.vstack([drawn, near_q]))


def index(
    qdrant: QdrantResource, collection: str, vectors: np.ndarray, meta: list, budget_s: float, per_step: int
) -> dict[str, Any]:
    """Write every media's points through `partition_writes`, one session per `per_step` media as
    a `search_index` step does; past the budget, upsert the rest directly and extrapolate."""
    from qdrant_client import models

    n = len(vectors)
    started = time.perf_counter()
    done, chunk_rates = 0, []
    while done < n and time.perf_counter() - started < budget_s:
        chunk_started, end, media = time.perf_counter(), done, 0
        while end < n and media < per_step:
            end += 1
            media += end == n or meta[end][0] != meta[end - 1][0]
        with qdrant.partition_writes(collection, DIM, sparse=[WORDS_VECTOR]) as writes:
            by_partition: dict[str, list[VectorPoint]] = {}
            for i in range(done, end):
                partition, item, payload = meta[i]
                indices, values = document_words(payload["text"])
                sparse = {WORDS_VECTOR: SparseVector(indices, values)}
                by_partition.setdefault(partition, []).append(VectorPoint(item, vectors[i], payload, sparse))
            for partition, points in by_partition.items():
                writes.replace(partition, ASSET, VERSION, points)
        chunk_rates.append((end - done) / (time.perf_counter() - chunk_started))
        done = end
    measured_s = time.perf_counter() - started
    out: dict[str, Any] = {"index_s": round(measured_s, 1), "indexed_through_resource": done}
    if done < n:
        # each point costs more as the collection grows: extrapolate from the last chunk's rate, which is
        # optimistic (a lower bound)
        out["index_s"] = round(measured_s + (n - done) / chunk_rates[-1], 1)
        out["index_s_extrapolated"] = True
        fill_started = time.perf_counter()
        with qdrant.client() as c:
            for start in range(done, n, 1024):
                stop = min(n, start + 1024)
                structs = [
                    models.PointStruct(
                        id=QdrantResource.point_id(meta[i][0], ASSET, meta[i][1], VERSION),
                        vector=vectors[i].tolist(),
                        payload={**meta[i][2], "partition": meta[i][0], "asset": ASSET, "model_version": VERSION},
                    )
                    for i in range(start, stop)
                ]
                c.upsert(collection, points=structs, wait=True)
        out["filled_directly"] = n - done
        out["fill_directly_s"] = round(time.perf_counter() - fill_started, 1)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def exact_top(vectors: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    scores = vectors @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def recall(found: list[str], truth: np.ndarray, ids: list[str], k: int = 10) -> float:
    want = {ids[i] for i in truth[:k]}
    return len(want & set(found[:k])) / k


def run_size(args: argparse.Namespace, n: int, work: Path) -> dict[str, Any]:
    vectors, meta = synthetic(n, args.per_media, args.latent_dim, args.seed)
    ids = [QdrantResource.point_id(p, ASSET, item, VERSION) for p, item, _ in meta]
    qs = queries(vectors, args.queries, args.near, args.per_media, args.latent_dim, args.seed)
    query_file = work / f"queries-{n}.npy"
    np.save(query_file, qs)
    folder = work / f"qdrant-{n}"
    collection = f"bench_text_{n}" if args.url else COLLECTION
    qdrant = QdrantResource(url=args.url or None, path=str(folder))
    if args.url:
        with qdrant.client() as c:
            c.delete_collection(collection)

    result: dict[str, Any] = {"points": n, "mode": "server" if args.url else "embedded", "latent_dim": args.latent_dim}
    result.update(index(qdrant, collection, vectors, meta, args.index_budget_s, args.media_per_step))
    if not args.url:
        result["disk_mib"] = round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)

    # fresh processes: what one `medialens search` pays
    fresh, process, fresh_rss, recalls = [], [], [], []
    for i in range(args.fresh):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.url, str(folder), collection, str(query_file), str(i)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"fresh search failed:\n{out.stderr[-3000:]}")
        child = json.loads(line[7:])
        process.append((time.perf_counter() - started) * 1000)
        fresh.append(child["search_s"] * 1000)
        fresh_rss.append(child["rss_mib"])
        recalls.append(recall(child["hits"], exact_top(vectors, qs[i], 10), ids))

    # warm: the client held open, as a long-lived process would
    warm, filtered, lexical = [], [], []
    mask = np.array([m[2]["source"] == "transcript" for m in meta])
    with qdrant.client():
        qdrant.search(collection, qs[0], limit=30)  # first call pays one-time costs
        for q in qs:
            started = time.perf_counter()
            hits = qdrant.search(collection, q, limit=30)
            warm.append((time.perf_counter() - started) * 1000)
            recalls.append(recall([h.id for h in hits], exact_top(vectors, q, 10), ids))
        for q in qs[: max(1, len(qs) // 3)]:
            started = time.perf_counter()
            hits = qdrant.search(collection, q, limit=30, must={"source": "transcript"})
            filtered.append((time.perf_counter() - started) * 1000)
            recalls.append(recall([h.id for h in hits], exact_top(vectors, q, 10, mask), ids))
        for text in word_queries(len(qs), args.seed):
            started = time.perf_counter()
            qdrant.search_sparse(collection, WORDS_VECTOR, SparseVector(*query_words(text)), limit=30)
            lexical.append((time.perf_counter() - started) * 1000)

    result.update(
        {
            "p50_ms": round(statistics.median(warm), 1),
            "p95_ms": round(percentile(warm, 95), 1),
            "filtered_p50_ms": round(statistics.median(filtered), 1),
            "words_p50_ms": round(statistics.median(lexical), 1),
            "fresh_p50_ms": round(statistics.median(fresh), 1),
            "fresh_process_p50_ms": round(statistics.median(process), 1),
            "fresh_rss_mib": round(max(fresh_rss), 1),
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )
    if args.url:
        with qdrant.client() as c:
            c.delete_collection(collection)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--points", type=int, nargs="+", default=[10000, 100000], help="sizes, e.g. 10000 100000 1000000")
    ap.add_argument("--per-media", type=int, default=100, help="points per media file (one partition each)")
    ap.add_argument("--media-per-step", type=int, default=20, help="partitions written per session (per step)")
    ap.add_argument(
        "--latent-dim", type=int, default=64, help="intrinsic dimension of the vectors; 0: uniform random unit vectors"
    )
    ap.add_argument("--queries", type=int, default=30, help="warm queries per size")
    ap.add_argument("--near", type=int, default=5, help="of which near-duplicates of stored vectors")
    ap.add_argument("--fresh", type=int, default=5, help="fresh-process searches per size")
    ap.add_argument("--index-budget-s", type=float, default=300.0, help="then upsert the rest directly")
    ap.add_argument("--url", default="", help="a Qdrant server instead of an embedded folder (collection bench_text_N)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    args = ap.parse_args()
    if not 0 <= args.near <= args.queries or args.fresh > args.queries:
        ap.error("need 0 <= --near <= --queries and --fresh <= --queries")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in args.points:
            print(json.dumps(run_size(args, n, work)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
