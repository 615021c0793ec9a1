"""Moment-search ranking quality: top-1 accuracy and MRR of `medialens search` on a generated eval set.

The corpus, the queries and the scoring rules are `tests/media_assets/search_eval.py` (four spoken
recordings, English and German, and a slide video with long and one-word text lines; 40-odd
queries in English, German and across the two). This script:

1. generates the corpus and analyses it with the real `medialens analyse DIR --json` in a fresh
   home (a temporary folder, or `--home DIR`: kept there, and reused by the next run with the same
   `--home`, which then skips straight to step 2 — about 1 minute saved per measurement);
2. runs every query through `media_assets.service.search.search` in this process, as `medialens search
   QUERY --json --limit N` does (`--cli`: through the real command instead, one process per query,
   slower: ~10 s each);
3. prints one JSON line: `{"queries", "top1", "mrr", "by_group": {en, de, cross}, "failures": [...]}`
   (each failure: the query, its group, the rank of the right answer or null, the expected answer and
   the hit that was first). `--show` also prints every query's top hits to stderr.

Before/after a ranking change: `--home /tmp/ranking-home` once on the old code, then again on the new.
A change to what gets indexed (`search_index`'s version) needs the index rebuilt: `--analyse` re-runs
`medialens analyse` on the kept corpus, which redoes only the stale assets.

Usage: .venv/bin/python bench/ranking.py [--home DIR] [--analyse] [--cli] [--limit 10] [--show]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.media_assets.search_eval

from tests.media_assets import search_eval  # noqa: E402


def prepare(base: Path, reanalyse: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The CLI env of the home under `base` and media name -> key, generating and analysing the corpus
    when `base` holds no analysed one (or `reanalyse`)."""
    env = search_eval.cli_env(base)
    keys_file = search_eval.keys_file(base)
    if keys_file.exists() and not reanalyse:
        return env, json.loads(keys_file.read_text())
    files = search_eval.build_corpus(base / "corpus")
    started = time.perf_counter()
    print(f"analysing {len(files)} files into {base} ...", file=sys.stderr, flush=True)
    keys = search_eval.analyse(env, files)
    print(f"analysed in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    keys_file.write_text(json.dumps(keys, indent=1) + "\n")
    return env, keys


def in_process(env: Mapping[str, str], limit: int) -> Callable[[str], list[dict[str, Any]]]:
    """`medialens search` without the process: the home's Qdrant, the search function, same settings."""
    for k in [k for k in os.environ if k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))]:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MEDIALENS_", "DAGSTER_"))})
    # imported only now: the asset modules read their settings (MEDIALENS_HOME's medialens.yaml) at import
    from media_assets.plumbing.config import Paths
    from media_assets.service.search import search
    from resources import build_resources

    qdrant = build_resources(Paths.from_env())["qdrant"]
    return lambda query: search(qdrant, query, limit=limit)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="keep the analysed corpus here and reuse it (home/, corpus/)")
    ap.add_argument("--analyse", action="store_true", help="re-run `medialens analyse` on a kept corpus")
    ap.add_argument("--cli", action="store_true", help="search through `medialens search --json` processes")
    ap.add_argument("--limit", type=int, default=10, help="hits per query (MRR counts 0 beyond it)")
    ap.add_argument("--show", action="store_true", help="print each query's top hits to stderr")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="medialens-ranking-") as tmp:
        base = args.home.expanduser().absolute() if args.home else Path(tmp)
        env, keys = prepare(base, args.analyse)
        run: Callable[[str], list[dict[str, Any]]]
        if args.cli:
            run = functools.partial(search_eval.cli_search, env, limit=args.limit)
        else:
            run = in_process(env, args.limit)
        started = time.perf_counter()
        found = {q.text: run(q.text) for q in search_eval.QUERIES}
        elapsed = time.perf_counter() - started
        result = search_eval.evaluate(found, keys)
    if args.show:
        for q in search_eval.QUERIES:
            rank = search_eval.rank_of(q, found[q.text], keys)
            print(f"[{q.group:5}] rank {rank}  {q.text!r} -> {q.media} {q.source} t={q.t}", file=sys.stderr)
            for h in found[q.text][:3]:
                name = next((n for n, k in keys.items() if k == h["key"]), h["key"])
                start = "-" if h["start"] is None else f"{h['start']:.1f}"
                print(f"      {h['score']:.3f} {name} {h['source']} {start} {h['text'][:70]!r}", file=sys.stderr)
    print(f"{len(found)} queries searched in {elapsed:.1f} s", file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
