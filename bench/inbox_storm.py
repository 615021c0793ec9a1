"""Many drops at once under a real `dagster-daemon`: how long from the last drop to all analysed.

The crash-safety issue's "many drops at once": N files (default 200) dropped by several writers at
the same time while the daemon and its upload sensor are already running: small generated images,
about 10 % byte-identical copies under other names, one in five written slowly in chunks (still
growing while the sensor looks), one in ten as `x.part` renamed to `x`, some in subfolders. It
measures what a user waits for: seconds from the last drop to every distinct file registered (a
partition), and to every partition analysed (all per-media assets materialised), plus the
sensor ticks and runs it took. It also checks the outcome: each distinct content registered once,
each copy in inbox/duplicates/ with its note, nothing left in the inbox or rejected.

What bounds it: a tick takes at most 20 files (InboxResource.max_files_per_tick) and ticks are at
least 10 s apart, so registering N files takes at least N / 2 seconds; the runs (one per tick's
files) queue behind max_concurrent_runs (dagster.yaml).

Usage: .venv/bin/python bench/inbox_storm.py [--files 200] [--writers 4] [--timeout 1800]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

# Run with `python -c`: no project imports, so writers start at once and write in parallel.
WRITER = r"""
import json, os, sys, time
last = 0.0
for item in json.load(open(sys.argv[1])):
    dest = item["dest"]
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    data = open(item["src"], "rb").read()
    target = dest + ".part" if item["mode"] == "part" else dest
    with open(target, "wb") as fh:
        if item["mode"] == "fast":
            fh.write(data)
        else:
            step = max(1, len(data) // 20)
            for i in range(0, len(data), step):
                fh.write(data[i : i + step])
                fh.flush()
                time.sleep(0.05)
    if target != dest:
        os.replace(target, dest)
    last = time.time()
    time.sleep(item["gap"])
print(json.dumps({"last_drop": last}))
"""


def make_drops(n: int, staging: Path, inbox: Path, rng: random.Random) -> tuple[list[dict[str, Any]], set[str]]:
    """The drops (source, destination, how it is written) and the sha256 of each distinct content."""
    from PIL import Image

    n_distinct = n - n // 10
    digests: set[str] = set()
    for i in range(n_distinct):
        side = rng.choice((64, 96, 128))
        img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        (staging / f"{i}.png").write_bytes(buf.getvalue())
        digests.add(hashlib.sha256(buf.getvalue()).hexdigest())
    items: list[dict[str, Any]] = []
    for i in range(n):
        src = i if i < n_distinct else rng.randrange(n_distinct)
        folder = rng.choice(["", "", "", "batch1/", "batch2/deeper/"])
        name = f"img{i:04d}.png" if i < n_distinct else f"copy {i} of img{src:04d}.png"  # one drop, one path
        mode = rng.choices(["fast", "slow", "part"], weights=[70, 20, 10])[0]
        items.append({"src": str(staging / f"{src}.png"), "dest": str(inbox / folder / name), "mode": mode})
    rng.shuffle(items)
    for item in items:
        item["gap"] = rng.choice((0, 0, 0.01, 0.05))
    return items, digests


def run(n: int, writers: int, timeout: float, root: Path) -> dict[str, Any]:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
    from media_assets.plumbing.staleness import find_stale
    from media_assets.service.headless import instance_yaml
    from media_assets.service.reanalyse import start_daemon, stop_daemon

    home, dagster_home = root / "home", root / "dagster_home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    (root / "medialens.yaml").write_text("summary:\n  backend: none\n")  # no LLM, as tests and bench/inbox.py
    staging = root / "staging"
    staging.mkdir()
    items, digests = make_drops(n, staging, inbox, random.Random(n))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(dagster_home), MEDIALENS_CONFIG=str(root / "medialens.yaml"))
    os.environ.update(env)  # find_stale below loads the same definitions
    from media_assets.definitions import defs

    started = time.time()
    daemon = start_daemon(root / "daemon.log", env)
    out: dict[str, Any] = {"files_dropped": n, "distinct": len(digests), "writers": writers}
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            # Drop while the sensor is live: wait for its first tick (the code location is loaded).
            while not _sensor_ticks(instance):
                _check(daemon, root, started, timeout)
                time.sleep(1)
            out["daemon_start_to_first_tick_s"] = round(time.time() - started, 1)
            procs = []
            for w in range(writers):
                plan = root / f"writer{w}.json"
                plan.write_text(json.dumps(items[w::writers]))
                procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(plan)], stdout=subprocess.PIPE))
            first_drop = time.time()
            last_drop = max(json.loads(p.communicate()[0])["last_drop"] for p in procs)
            out["dropping_s"] = round(last_drop - first_drop, 1)
            registered_at = analysed_at = None
            while analysed_at is None:
                _check(daemon, root, started, timeout)
                keys = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
                if registered_at is None and len(keys) >= len(digests):
                    registered_at = time.time()
                runs = [r for r in instance.get_runs() if r.job_name == "analyse_media"]
                if registered_at and runs and all(r.status.value in TERMINAL for r in runs):
                    lacking = {s.partition for s in find_stale(instance, defs)}
                    failed = [r for r in runs if r.status.value != "SUCCESS"]
                    if not lacking or (failed and _settled(instance, runs)):
                        analysed_at = time.time()
                        out["partitions_lacking_assets"] = len(lacking)
                time.sleep(3)
            keys = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
            runs = [r for r in instance.get_runs() if r.job_name == "analyse_media"]
            ticks = _sensor_ticks(instance)
            out.update(
                registered=len(keys),
                registered_distinct_contents=len({k.rsplit("-", 1)[1] for k in keys}),
                all_distinct_registered={k.rsplit("-", 1)[1] for k in keys} == {d[:10] for d in digests},
                duplicates_set_aside=_count(inbox / "duplicates", with_notes=True),
                rejected=_count(inbox / "rejected"),
                left_in_inbox=len([p for p in inbox.rglob("*") if p.is_file() and _outside(p, inbox)]),
                seconds_last_drop_to_all_registered=round((registered_at or 0) - last_drop, 1),
                seconds_last_drop_to_all_analysed=round(analysed_at - last_drop, 1),
                sensor_ticks=len(ticks),
                sensor_ticks_with_runs=sum(1 for t in ticks if t.run_ids),
                runs_created=len(runs),
                runs_failed=sum(1 for r in runs if r.status.value != "SUCCESS"),
                files_per_run=sorted(int(r.tags.get("medialens/files", "1")) for r in runs),
            )
            out["lost"] = n - out["registered"] - out["duplicates_set_aside"] - out["rejected"] - out["left_in_inbox"]
            out["cpu_count"] = os.cpu_count()
    finally:
        stop_daemon(daemon)
    return out


def _sensor_ticks(instance: Any) -> list[Any]:
    from dagster._core.scheduler.instigation import InstigatorType

    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    state = next((s for s in states if s.instigator_name == "media_upload_sensor"), None)
    if state is None:
        return []
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=10_000))


def _settled(instance: Any, runs: list[Any]) -> bool:
    """With failed runs, done once a minute passed without a new run (failed_batch_sensor is done)."""
    newest = max(instance.get_run_record_by_id(r.run_id).create_timestamp.timestamp() for r in runs)
    return time.time() - newest > 60


def _check(daemon: subprocess.Popen[bytes], root: Path, started: float, timeout: float) -> None:
    if daemon.poll() is not None:
        raise RuntimeError((root / "daemon.log").read_text()[-3000:])
    if time.time() - started > timeout:
        raise RuntimeError(f"not done within {timeout:.0f} s; see {root / 'daemon.log'}")


def _count(folder: Path, with_notes: bool = False) -> int:
    if not folder.is_dir():
        return 0
    files = [p for p in folder.iterdir() if not p.name.endswith(".reason.txt")]
    if with_notes:
        assert all((folder / f"{p.name}.reason.txt").exists() for p in files), "a set-aside file lacks its note"
    return len(files)


def _outside(path: Path, inbox: Path) -> bool:
    return not ({inbox / "duplicates", inbox / "rejected"} & set(path.parents))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    ap.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        result = run(args.files, args.writers, args.timeout, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.files, args.writers, args.timeout, Path(tmp))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
