"""Files dropped into the inbox under a real `dagster-daemon`, against the bare loop.

bench/vision.py times the CLI path: one in-process run over all files, models loaded once. The
UI path is different: the upload sensor puts a tick's new files into runs of at most
MEDIALENS_MAX_PARTITIONS_PER_RUN, the queue starts at most two at once (dagster_home/dagster.yaml),
and each run is a new process that loads the code location and the models it needs again.
Per variant of that limit (default: 8, the earlier default, and 32, the default now) this bench:
- takes a fresh home and instance, drops N files (bench/vision.py's mix) into the inbox at once;
- starts the daemon, and waits until every run has ended and the inbox is empty;
- prints the daemon's start-up (code location load and the first tick, paid once per daemon),
  the runs (files, seconds each), and the processing window: from the first run's start to the
  last one's end.
The yardstick is the bare loop over the same media in one process, loading each model once as any
script would (each run loads them too, in its own process): decode and models, no Dagster, no
tables. The overhead is 1 - bare / window.

Usage: .venv/bin/python bench/inbox.py [--files 20] [--limits 8,32] [--concurrent-runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def through_daemon(files: list[Path], limit: int, root: Path, concurrent_runs: int = 0) -> float:
    """Drop `files` into a fresh inbox, let the daemon analyse them; returns the processing window."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from media_assets.service.headless import instance_yaml
    from media_assets.service.reanalyse import start_daemon, stop_daemon

    home, dagster_home = root / "home", root / "dagster_home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    dagster_home.mkdir()
    yaml = instance_yaml(dagster_home)
    if concurrent_runs:
        yaml = yaml.replace("max_concurrent_runs: 2", f"max_concurrent_runs: {concurrent_runs}")
    (dagster_home / "dagster.yaml").write_text(yaml)
    past = time.time() - 60  # older than the sensor's "still being written" wait
    for i, src in enumerate(files):
        dest = inbox / src.name
        shutil.copyfile(src, dest)
        os.utime(dest, (past + i, past + i))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(
        MEDIALENS_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        MEDIALENS_CONFIG=os.environ["MEDIALENS_CONFIG"],
        MEDIALENS_MAX_PARTITIONS_PER_RUN=str(limit),
    )
    started = time.time()
    daemon = start_daemon(root / "daemon.log", env)
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            quiet_since = None
            while time.time() - started < 1800:
                if daemon.poll() is not None:
                    raise RuntimeError((root / "daemon.log").read_text()[-3000:])
                records = instance.get_run_records()
                done = records and all(r.dagster_run.status.value in TERMINAL for r in records)
                drained = not [p for p in inbox.iterdir() if p.is_file()]
                if done and drained:
                    quiet_since = quiet_since or time.time()
                    if time.time() - quiet_since > 15:  # a tick later, still nothing new: finished
                        break
                else:
                    quiet_since = None
                time.sleep(2)
            else:
                raise RuntimeError("the daemon did not finish within 30 minutes")
            records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    finally:
        stop_daemon(daemon)
    first_start = min(r.start_time for r in records if r.start_time)
    last_end = max(r.end_time for r in records if r.end_time)
    print(f"\nlimit {limit}: {len(files)} files, {len(records)} run(s)")
    print(f"  daemon start-up to the first run's start: {first_start - started:.1f} s (once per daemon)")
    for r in records:
        files_in_run = r.dagster_run.tags.get("medialens/files", "1")
        wall = (r.end_time or 0) - (r.start_time or 0)
        print(
            f"  run {r.dagster_run.run_id[:8]}  {files_in_run:>2} file(s)  {wall:6.1f} s  {r.dagster_run.status.value}"
        )
    longest = max(records, key=lambda r: (r.end_time or 0) - (r.start_time or 0))
    steps = sorted(
        (st for st in instance_steps(dagster_home, longest.dagster_run.run_id) if st.start_time and st.end_time),
        key=lambda st: st.start_time,
    )
    if steps and longest.start_time:
        print(f"  steps of run {longest.dagster_run.run_id[:8]} (model loads included):")
        print(f"    {'process start, code load':<26}{steps[0].start_time - longest.start_time:6.1f} s")
        for st in steps:
            print(f"    {st.step_key:<26}{st.end_time - st.start_time:6.1f} s")
    window = last_end - first_start
    print(f"  processing window (first run's start to last run's end): {window:.1f} s")
    return window


def instance_steps(dagster_home: Path, run_id: str) -> list:
    """The step stats of one run (start and end of each step)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        return list(instance.get_run_step_stats(run_id))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--limits", default="8,32", help="values of MEDIALENS_MAX_PARTITIONS_PER_RUN to compare")
    ap.add_argument("--concurrent-runs", type=int, default=0, help="the queue's limit (default: dagster.yaml's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "medialens.yaml").write_text("summary:\n  backend: none\n")  # no LLM: the bare loop has none
        os.environ.update(MEDIALENS_HOME=str(tmp / "bare-home"), MEDIALENS_CONFIG=str(tmp / "medialens.yaml"))
        from vision import bare_loop, distinct_copies

        from media_assets.service.samples import generate_samples

        files = distinct_copies(generate_samples(tmp / "samples"), args.files, tmp / "copies")
        # First, while this process has loaded no model: a script that loads each model once and
        # runs the files, as a run does; then the same again with the models warm.
        cold, _ = bare_loop(files, tmp / "bare-cold", with_loads=True)
        warm, _ = bare_loop(files, tmp / "bare-warm")
        windows = {}
        for limit in (int(x) for x in args.limits.split(",")):
            windows[limit] = through_daemon(files, limit, tmp / f"limit-{limit}", args.concurrent_runs)
        print(f"\nbare loop over the same files (decode + models, no Dagster, one process): {cold:.1f} s")
        print(f"  of which loading the models: {cold - warm:.1f} s")
        for limit, window in windows.items():
            print(f"limit {limit}: window {window:.1f} s, overhead 1 - bare / window = {1 - cold / window:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
