"""What Dagster's event log costs a range run, per instance storage, side by side.

One run of 20 partitions x 10 trivial assets (about 440 events, 400 of them asset events: planned
and materialised), after a warm-up run of 20 others, on:
- Dagster's stock sqlite storage (one commit per event, two for asset events),
- medialens's BatchingSqliteStorage (media_assets/plumbing/event_storage.py: one commit per batch),
- with --postgres-url: Dagster's Postgres storage as is, and with DAGSTER_EVENT_BATCH_SIZE set
  (dagster-postgres then writes a step's materialisations in one insert; planned events stay
  one by one).
Each storage runs in its own process, so the batching switch of one cannot leak into another.

Usage: .venv/bin/python bench/event_log.py [--postgres-url postgresql://user@host:port/db]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_PARTITIONS, N_ASSETS = 40, 10  # the first half warms up, the second half is timed


def one_storage(kind: str, postgres_url: str) -> None:
    """Runs in a child process: time one range run on the storage `kind`; print one line."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dagster import (
        AssetExecutionContext,
        AssetsDefinition,
        BackfillPolicy,
        DagsterInstance,
        MaterializeResult,
        StaticPartitionsDefinition,
        asset,
        materialize,
    )
    from dagster._core.instance.ref import InstanceRef

    from media_assets.service.headless import instance_yaml

    keys = [f"p{i:03d}" for i in range(N_PARTITIONS)]
    parts = StaticPartitionsDefinition(keys)

    def make(n: int) -> AssetsDefinition:
        @asset(
            name=f"a{n}",
            partitions_def=parts,
            backfill_policy=BackfillPolicy.single_run(),
            deps=[f"a{n - 1}"] if n else [],
        )
        def step(context: AssetExecutionContext) -> MaterializeResult:
            return MaterializeResult(metadata={"partitions": len(context.partition_keys)})

        return step

    assets = [make(n) for n in range(N_ASSETS)]
    home = Path(tempfile.mkdtemp(prefix=f"event-log-{kind}-"))
    if kind.startswith("postgres"):
        (home / "dagster.yaml").write_text(
            f"telemetry: {{enabled: false}}\nstorage:\n  postgres:\n    postgres_url: {postgres_url}\n"
        )
        if kind == "postgres, batched":
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "1000"
    elif kind == "sqlite, medialens":
        (home / "dagster.yaml").write_text(instance_yaml(home))
    else:
        (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    half = N_PARTITIONS // 2
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for start, end in ((0, half - 1), (half, N_PARTITIONS - 1)):  # the second one counts
            tags = {"dagster/asset_partition_range_start": keys[start], "dagster/asset_partition_range_end": keys[end]}
            t0 = time.perf_counter()
            result = materialize(assets, instance=instance, tags=tags)
            seconds = time.perf_counter() - t0
        events = len(instance.all_logs(result.run_id))
    print(f"  {kind:<20}{seconds:8.2f} s{events:8d} events{1000 * seconds / events:8.1f} ms/event", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres-url", default="", help="an empty database Dagster may create tables in")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # the child process's storage
    args = ap.parse_args()
    if args.one:
        one_storage(args.one, args.postgres_url)
        return 0
    kinds = ["sqlite, stock", "sqlite, medialens"]
    if args.postgres_url:
        kinds += ["postgres, stock", "postgres, batched"]
    print(f"one run of {N_PARTITIONS // 2} partitions x {N_ASSETS} assets (warm), per storage:")
    for kind in kinds:
        cmd = [sys.executable, __file__, "--one", kind, "--postgres-url", args.postgres_url]
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_EVENT_BATCH_SIZE"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        print(done.stdout.rstrip() or f"  {kind}: failed\n{done.stderr[-2000:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
