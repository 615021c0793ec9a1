"""Many drops at once: 200 files from four writer processes while the real sensor ticks.

Some files are still being written (in chunks, with pauses) while the sensor looks, some arrive as
`x.part` renamed to `x`, some are replaced after they were first written, some sit in subfolders,
and about 10 % are byte-identical copies under other names (several named alike, so their names
collide in duplicates/). The daemon is played by the test: each tick's partitions are added and
its runs created as the daemon would; the analysis itself is not run (registration is the sensor's
whole job). Every distinct content must be registered exactly once and run exactly once, every copy
set aside with its note, and nothing lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, RunRequest
from PIL import Image

from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from resources.inbox import InboxResource
from resources.store import MediaStore
from tests.sensors.test_upload import apply_partitions, create_runs, evaluate, requested_partitions

DROPS = 200
WRITERS = 4
SETTLE_S = 1.0  # the test ticks every ~0.2 s; writers pause 25 ms between chunks

# Run with `python -c`: no project imports, so the writers start in milliseconds.
WRITER = r"""
import json, os, sys, time
for item in json.load(open(sys.argv[1])):
    dest = item["dest"]
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    data = open(item["src"], "rb").read()
    mode = item["mode"]
    if mode == "replace":  # a first version, then another renamed over it
        with open(dest, "wb") as fh:
            fh.write(open(item["first"], "rb").read())
        time.sleep(0.1)
        with open(dest + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(dest + ".tmp", dest)
    elif mode in ("slow", "part"):
        target = dest + ".part" if mode == "part" else dest
        with open(target, "wb") as fh:
            step = max(1, len(data) // 20)
            for i in range(0, len(data), step):
                fh.write(data[i : i + step])
                fh.flush()
                time.sleep(0.025)
        if mode == "part":
            os.replace(target, dest)
    else:
        with open(dest, "wb") as fh:
            fh.write(data)
    time.sleep(item["gap"])
"""


def png(i: int, rng: random.Random) -> bytes:
    """A small PNG whose pixels are its own: the index in the first pixel, noise elsewhere."""
    side = rng.choice((16, 24, 40))
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    img.putpixel((0, 0), (i % 256, i // 256, 7))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def plan_drops(staging: Path, inbox: Path, rng: random.Random) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The drops (what each writer writes where, and how) and the contents dropped last."""
    n_distinct = DROPS - DROPS // 10
    contents = [png(i, rng) for i in range(n_distinct)]
    for i, data in enumerate(contents):
        (staging / f"{i}.png").write_bytes(data)
    items: list[dict[str, Any]] = []
    for i in range(n_distinct):
        mode = rng.choices(["fast", "slow", "part", "replace"], weights=[60, 22, 12, 6])[0]
        folder = rng.choice(["", "", "", "batch1/", "batch2/deeper/"])
        item: dict[str, Any] = {
            "src": str(staging / f"{i}.png"),
            "dest": str(inbox / f"{folder}img{i:03d}.png"),
            "mode": mode,
        }
        if mode == "replace":  # the first version is content of its own, never to be registered
            first = staging / f"{i}.first.png"
            first.write_bytes(png(10_000 + i, rng))
            item["first"] = str(first)
        items.append(item)
    for j in range(DROPS - n_distinct):  # byte-identical copies; several named alike
        i = rng.randrange(n_distinct)
        mode = rng.choice(["fast", "slow", "part"])
        items.append({"src": str(staging / f"{i}.png"), "dest": str(inbox / f"copies/{j}/copy.png"), "mode": mode})
    rng.shuffle(items)
    for item in items:
        item["gap"] = rng.choice((0, 0, 0.01, 0.03))
    return items, contents


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_two_hundred_files_from_several_writers_are_each_registered_once(
    instance: DagsterInstance, resources: dict[str, Any], tmp_path: Path
) -> None:
    inbox = InboxResource(path=resources["inbox"].path, settle_seconds=SETTLE_S)
    res = {**resources, "inbox": inbox}
    store: MediaStore = resources["store"]
    staging = tmp_path / "staging"
    staging.mkdir()
    items, contents = plan_drops(staging, inbox.root, random.Random(20260501))
    writers = []
    for w in range(WRITERS):
        plan = tmp_path / f"writer{w}.json"
        plan.write_text(json.dumps(items[w::WRITERS]))
        writers.append(subprocess.Popen([sys.executable, "-c", WRITER, str(plan)]))

    requests: list[RunRequest] = []
    cursor = None
    ticks = 0
    taken_per_tick: list[int] = []
    deadline = time.monotonic() + 50
    quiet = 0
    while quiet < 2:  # two ticks in a row with nothing to do, once the writers are done
        assert time.monotonic() < deadline, f"not done after {ticks} ticks"
        writing = any(w.poll() is None for w in writers)
        result = evaluate(instance, res, cursor)
        apply_partitions(instance, result)
        create_runs(instance, list(result.run_requests or []))
        requests += result.run_requests or []
        taken_per_tick.append(sum(len(r.partition_keys or []) for r in result.dynamic_partitions_requests or []))
        cursor = result.cursor
        ticks += 1
        busy = writing or result.run_requests or json.loads(cursor or "{}").get("pending")
        quiet = 0 if busy else quiet + 1
        time.sleep(0.2)
    assert all(w.wait() == 0 for w in writers)

    distinct = {sha(c) for c in contents}
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    # every distinct content registered exactly once, and nothing else (no half-written file, no
    # first version of a replaced one)
    assert len(order) == len(set(order)) == len(distinct)
    assert {k.rsplit("-", 1)[1] for k in order} == {s[:10] for s in distinct}
    for key in order:  # each source record points at the very bytes that were admitted
        record = store.read_source(key)
        taken = Path(record["path"])
        assert taken.exists() and sha(taken.read_bytes()) == record["sha256"], key
    # every copy set aside with its note; names that collided did not overwrite each other
    dup_dir = inbox.root / "duplicates"
    dups = [p for p in dup_dir.iterdir() if not p.name.endswith(".reason.txt")]
    assert len(dups) == DROPS - len(distinct)
    for p in dups:
        assert sha(p.read_bytes()) in distinct
        assert "same bytes as" in (dup_dir / f"{p.name}.reason.txt").read_text()
    assert not (inbox.root / "rejected").exists()
    left = [p for p in inbox.root.rglob("*") if p.is_file() and dup_dir not in p.parents]
    assert not left, left
    # none lost: every drop is a partition or a set-aside copy
    assert len(order) + len(dups) == DROPS
    # each partition in exactly one run request, run keys unique
    covered = requested_partitions(requests, order)
    assert sorted(covered) == sorted(order)
    keys = [r.run_key for r in requests]
    assert len(keys) == len(set(keys))
    # the per-tick cap holds, so 200 files took at least 10 ticks
    assert max(taken_per_tick) <= inbox.max_files_per_tick
    assert sum(1 for n in taken_per_tick if n) >= len(order) // inbox.max_files_per_tick
