"""A 5-minute talk end to end, as a new user runs it, against the bare loop of the same models (issue 17).

1. Generates the talk deterministically: 20 slides of 15 s at 1280x720, each with its own title
   band and text, narrated by espeak-ng (one passage per slide, cut or padded to the slide), H.264
   + AAC. Keyframes come from the slide changes and the held pictures in between.
2. `medialens analyse talk.mp4 --json` in a fresh process on a fresh home, default settings, every
   analysis on (the summary as configured by default). Wall time, the realtime factor, peak RSS of
   the whole process tree, and per step its start, wall seconds and seconds inside the model.
3. In the same run, the bare loop (bench/vision.bare_loop) in a fresh process: decode, every model
   loaded once and run, no Dagster, no tables, no Qdrant.
4. With --inbox: the same file dropped into the inbox under a warm `dagster-daemon` (started and
   through two sensor ticks before the drop), --phase s after a tick (the sensor ticks every 5 s, so
   a drop lands 0-5 s after one; 2.5 s is the mean); wall time from the drop to the run's success.

Usage: .venv/bin/python bench/realtime.py [--minutes 5] [--inbox [--phase S]] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

SLIDE_S = 15
TOPICS = [
    (
        "Harbour operations review",
        "Welcome to the harbour operations review. We cover cranes, berths, safety and the budget.",
    ),
    (
        "Crane offline at pier 4",
        "The crane at pier four is offline until Friday. Please move container traffic to pier two.",
    ),
    (
        "Berth schedule for March",
        "Three ships arrive in the first week of March. Berth seven is reserved for the ferry.",
    ),
    ("Safety first: wear helmets", "Safety first. Wear helmets and high visibility vests on the quay at all times."),
    ("Incident report", "Last month we recorded two minor incidents. Nobody was hurt and both were reported on time."),
    ("New tugboat arrives", "A new tugboat arrives next Tuesday. The crew will train on it during the night shift."),
    ("Fuel prices", "Fuel prices rose by six percent. We will renegotiate the supply contract in April."),
    ("Container volume", "Container volume grew by four percent compared with the same quarter last year."),
    ("Night shift staffing", "The night shift needs four more operators. Applications close at the end of the month."),
    ("Weather warnings", "Storm warnings stop all crane work when the wind is faster than seventy kilometres an hour."),
    ("Customs inspections", "Customs will inspect one container in twenty. Keep the inspection lane free."),
    (
        "Electric trucks",
        "Six electric trucks replace the diesel fleet this summer. Chargers are installed at gate three.",
    ),
    ("Dredging the channel", "The channel will be dredged in May. Large ships must wait for high tide."),
    ("Budget overview", "The maintenance budget is on track. Spending on spare parts was lower than planned."),
    ("Training plan", "Every operator completes the crane simulator course before the end of the year."),
    ("Visitor rules", "Visitors sign in at the main gate and stay with their guide inside the terminal."),
    ("Cold storage", "Cold storage is full on weekends. Book refrigerated slots two days in advance."),
    ("Rail connection", "The rail connection carries a third of all containers. Two more trains run from June."),
    ("Open questions", "Please send your questions about the schedule to the operations office."),
    ("Thank you", "Thank you for listening. The next review takes place in three months."),
]


def make_talk(out: Path, minutes: float, work: Path) -> Path:
    """The talk: TOPICS cycled to fill `minutes`, SLIDE_S seconds each, narrated, 1280x720."""
    from media_assets.service.samples import narrated_slides, require_tools

    require_tools()
    work.mkdir(parents=True, exist_ok=True)
    n = max(1, round(minutes * 60 / SLIDE_S))
    slides = [
        (title, said, ((i * 67) % 200 + 20, (i * 131) % 200 + 20, (i * 29) % 200 + 20))
        for i, (title, said) in ((i, TOPICS[i % len(TOPICS)]) for i in range(n))
    ]
    narrated_slides(out, work, slides, SLIDE_S, (1280, 720))
    return out


class TreeRss:
    """Peak of the summed RSS of a process and all its descendants, sampled every 0.1 s (two
    processes side by side count together, which `ru_maxrss` would not)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed_process(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int, int]:
    """Runs cmd; returns (wall seconds, peak tree RSS in bytes, exit code)."""
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        rss = TreeRss(proc.pid)
        rc = proc.wait()
    return time.perf_counter() - started, rss.stop(), rc


def fresh_env(home: Path, *more: Path) -> dict[str, str]:
    """The environment of a fresh home: `home` (and `more` folders) emptied first, so a --keep folder
    of an earlier bench never turns the analysis into "already analysed"."""
    for folder in (home, *more):
        shutil.rmtree(folder, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_", "REDIS_"))}
    # a fresh instance too (the CLI would otherwise take the repo's ./dagster_home)
    env.update(MEDIALENS_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), PYTHONPATH=str(ROOT))
    return env


def step_table(dagster_home: Path, store_root: Path) -> list[dict[str, Any]]:
    """Each step of the runs in this instance: start (s after the first run's start), wall, model s."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from resources.store import MediaStore

    store = MediaStore(root=str(store_root))
    keys = [p.stem for p in (store_root / "manifests" / "media_file").glob("*.json")]
    rows: list[dict[str, Any]] = []
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        records = instance.get_run_records()
        t0 = min((r.start_time for r in records if r.start_time), default=0.0)
        for record in records:
            for st in instance.get_run_step_stats(record.dagster_run.run_id):
                if not (st.start_time and st.end_time):
                    continue
                model_s = sum(
                    float((store.read_manifest(st.step_key, k) or {}).get("model_seconds") or 0.0) for k in keys
                )
                rows.append(
                    {
                        "step": st.step_key,
                        "start": round(st.start_time - t0, 1),
                        "wall": round(st.end_time - st.start_time, 1),
                        "model": round(model_s, 1),
                    }
                )
    return sorted(rows, key=lambda r: r["start"])


def cli_path(talk: Path, root: Path) -> dict[str, Any]:
    home = root / "cli-home"
    env = fresh_env(home)
    cmd = [sys.executable, "-m", "media_assets.cli", "analyse", str(talk), "--json"]
    wall, rss, rc = timed_process(cmd, env, root / "cli.log")
    if rc != 0:
        raise RuntimeError(f"medialens analyse failed ({rc}):\n{(root / 'cli.log').read_text()[-3000:]}")
    return {"wall": wall, "rss": rss, "steps": step_table(home / "dagster_home", home / "store")}


BARE = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from vision import bare_loop
wall, inside = bare_loop([Path(sys.argv[1])], Path(sys.argv[2]), with_loads=True)
print(json.dumps({"loop": wall, "inside": inside, "imports": time.perf_counter() - t0 - wall}))
"""


def bare_path(talk: Path, root: Path) -> dict[str, Any]:
    env = fresh_env(root / "bare-home")
    env["PYTHONPATH"] = f"{ROOT / 'bench'}:{ROOT}"
    shutil.rmtree(root / "bare-out", ignore_errors=True)
    (root / "bare-out").mkdir()
    wall, rss, rc = timed_process(
        [sys.executable, "-c", BARE, str(talk), str(root / "bare-out")], env, root / "bare.log"
    )
    text = (root / "bare.log").read_text()
    if rc != 0:
        raise RuntimeError(f"bare loop failed ({rc}):\n{text[-3000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    return {"wall": wall, "rss": rss, **result}


def inbox_path(talk: Path, root: Path, phase: float = 2.5) -> dict[str, Any]:
    """Drop under a warm daemon, `phase` s after a sensor tick: wall time from the drop to the last
    run's end."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    from media_assets.service.headless import instance_yaml
    from media_assets.service.reanalyse import start_daemon, stop_daemon

    home, dagster_home = root / "inbox-home", root / "inbox-dagster"
    env = fresh_env(home, dagster_home)
    (home / "inbox").mkdir(parents=True)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    env["DAGSTER_HOME"] = str(dagster_home)
    daemon = start_daemon(root / "daemon.log", env)
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            deadline = time.time() + 300

            def tick_after(previous: float | None) -> float:
                """Wait for a tick of the upload sensor later than `previous`; when it started."""
                while (tick := _last_tick(instance, "media_upload_sensor")) is None or tick == previous:
                    if time.time() > deadline or daemon.poll() is not None:
                        raise RuntimeError((root / "daemon.log").read_text()[-3000:])
                    time.sleep(0.1)
                return tick

            # Warm once the code server has ticked twice. A drop lands anywhere between two ticks,
            # 5 s apart: `phase` seconds after one (2.5 s: on average).
            tick = tick_after(tick_after(None))
            time.sleep(max(0.0, tick + phase - time.time()))
            dropped = time.time()
            tmp = home / "inbox" / ".talk.mp4.part"
            shutil.copyfile(talk, tmp)
            os.replace(tmp, home / "inbox" / "talk.mp4")
            while True:
                records = instance.get_run_records()
                if records and all(r.dagster_run.is_finished for r in records):
                    break
                if time.time() - dropped > 1200 or daemon.poll() is not None:
                    raise RuntimeError((root / "daemon.log").read_text()[-3000:])
                time.sleep(0.5)
            end = max(r.end_time or 0.0 for r in records)
            statuses = [r.dagster_run.status.value for r in records]
            created = min(r.create_timestamp.timestamp() for r in records)
            started = min(r.start_time or end for r in records)
    finally:
        stop_daemon(daemon)
    return {
        "phase": phase,
        "wall": end - dropped,
        "to_create": created - dropped,
        "to_start": started - created,
        "run": end - started,
        "runs": statuses,
        "steps": step_table(dagster_home, home / "store"),
    }


def _last_tick(instance: Any, sensor: str) -> float | None:
    """When the daemon's last tick of this sensor started (None: none yet)."""
    for state in instance.all_instigator_state():
        if state.name == sensor:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            return ticks[0].timestamp if ticks else None
    return None


def print_steps(rows: list[dict[str, Any]]) -> None:
    print(f"  {'step':<18}{'start s':>8}{'wall s':>8}{'model s':>9}")
    for row in rows:
        print(f"  {row['step'][:40]:<18}{row['start']:8.1f}{row['wall']:8.1f}{row['model']:9.1f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--inbox", action="store_true", help="also the inbox path under a warm dagster-daemon")
    ap.add_argument("--skip-bare", action="store_true")
    ap.add_argument("--skip-cli", action="store_true", help="with --inbox: only the inbox path")
    ap.add_argument("--keep", type=Path, help="keep the talk and homes here")
    ap.add_argument(
        "--phase", type=float, default=2.5, help="inbox path: drop this long after a sensor tick (0-5 s; mean 2.5)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medialens-realtime-") as tmp_s:
        root = (args.keep or Path(tmp_s)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        talk = root / "talk.mp4"
        if not talk.exists():
            make_talk(talk, args.minutes, root / "talk-work")
        seconds = args.minutes * 60
        cli = None
        if not args.skip_cli:
            cli = cli_path(talk, root)
            print(f"\nCLI path: medialens analyse talk.mp4 ({args.minutes:g} min 720p, fresh home, defaults)")
            print(f"  wall {cli['wall']:.1f} s = {seconds / cli['wall']:.1f}x realtime, "
                  f"peak RSS {cli['rss'] / 2**30:.2f} GiB")  # fmt: skip
            print_steps(cli["steps"])
        if not args.skip_bare:
            bare = bare_path(talk, root)
            print("\nbare loop (same models loaded once, decode + inference, no Dagster), fresh process")
            print(
                f"  wall {bare['wall']:.1f} s = {seconds / bare['wall']:.1f}x realtime "
                f"(imports {bare['imports']:.1f} s, loads + loop {bare['loop']:.1f} s), "
                f"peak RSS {bare['rss'] / 2**30:.2f} GiB"
            )
            print("  inside the models: " + ", ".join(f"{k} {v:.1f} s" for k, v in bare["inside"].items()))
            if cli is not None:
                print(f"\nCLI wall / bare wall = {cli['wall'] / bare['wall']:.2f}")
        if args.inbox:
            inbox = inbox_path(talk, root, args.phase)
            print(f"\ninbox path: drop under a warm daemon to the run's end: {inbox['wall']:.1f} s "
                  f"= {seconds / inbox['wall']:.1f}x realtime, runs {inbox['runs']}")  # fmt: skip
            print(f"  dropped {inbox['phase']:.1f} s after a sensor tick; to the run's creation (sensor) "
                  f"{inbox['to_create']:.1f} s, "
                  f"to start (queue, launch) {inbox['to_start']:.1f} s, run {inbox['run']:.1f} s")  # fmt: skip
            print_steps(inbox["steps"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
