"""In-process vs multiprocess executor for the analysis job, side by side (ops_gpu/executors.py).

What a sensor- or UI-launched run does: a fresh process loads the code location and runs
`analyse_media` over a range of N new partitions. Each executor gets its own empty MEDIALENS_HOME
and DAGSTER_HOME and the same N files (distinct bytes); wall time of the run and per-step times
are printed, then the ratio. Summaries stay extractive (tests/medialens-test.yaml) so the LLM does
not dominate.

Usage: .venv/bin/python bench/executors.py [--files 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_one(files: list[str]) -> dict:
    """In this (fresh) process: register the files as new partitions and run the job over them."""
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from media_assets.analysis.inspect import Limits
    from media_assets.assets.jobs import ANALYSE_JOB_NAME
    from media_assets.definitions import defs
    from media_assets.plumbing.config import Paths, current_settings
    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
    from media_assets.plumbing.registration import admit, register
    from media_assets.service.headless import QUIET, dagster_instance

    instance = dagster_instance(Paths.from_env())
    store = defs.resources["store"]
    limits = Limits.from_params(current_settings().of("media_file"))
    keys: list[str] = []
    for f in files:
        a = admit(Path(f), limits, keys)
        if a.status != "new":
            continue
        register(store, a, Path(f).resolve(), move=False)
        keys.append(str(a.key))
    instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, keys)
    job = ReconstructableRepository.for_module(
        "media_assets.definitions", "defs", working_directory=str(ROOT)
    ).get_reconstructable_job(ANALYSE_JOB_NAME)
    started = time.perf_counter()
    result = execute_job(
        job,
        instance=instance,
        run_config=QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    wall = time.perf_counter() - started
    steps = {
        s.step_key: round(s.end_time - s.start_time, 1)
        for s in instance.get_run_step_stats(result.run_id)
        if s.start_time and s.end_time
    }
    return {"success": result.success, "partitions": len(keys), "wall_s": round(wall, 1), "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(run_one(args.child)))
        return 0

    sys.path.insert(0, str(ROOT / "bench"))
    from vision import distinct_copies

    from media_assets.service.samples import generate_samples

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        files = distinct_copies(generate_samples(tmp / "samples"), args.files, tmp / "copies")
        results = {}
        for kind in ("in_process", "multiprocess"):
            env = {
                **os.environ,
                "MEDIALENS_EXECUTOR": kind,
                "MEDIALENS_HOME": str(tmp / kind / "home"),
                "DAGSTER_HOME": str(tmp / kind / "dagster"),
                "MEDIALENS_CONFIG": str(ROOT / "tests" / "medialens-test.yaml"),
            }
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--child", *map(str, files)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(out.stderr[-3000:])
                return 1
            results[kind] = {**json.loads(line[7:]), "process_s": round(time.perf_counter() - started, 1)}
            r = results[kind]
            print(f"{kind:<13} run {r['wall_s']:6.1f} s  process {r['process_s']:6.1f} s  success {r['success']}")
        steps = sorted({s for r in results.values() for s in r["steps"]})
        print(f"\n{'step':<16}{'in_process s':>14}{'multiprocess s':>16}")
        for s in steps:
            a, b = (results[k]["steps"].get(s, 0.0) for k in ("in_process", "multiprocess"))
            print(f"{s:<16}{a:14.1f}{b:16.1f}")
        ratio = results["multiprocess"]["wall_s"] / results["in_process"]["wall_s"]
        print(f"\n{args.files} files: multiprocess run / in-process run = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
