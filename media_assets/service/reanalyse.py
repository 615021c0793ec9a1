"""`medialens reanalyse`: redo exactly what a changed model or setting made stale, as a Dagster backfill.

Why a backfill and not in-process runs (as `analyse` does): a re-analysis after an upgrade may cover
the whole library. A backfill is recorded in the instance, shows on the UI's Backfills page with
its runs, can be cancelled or retried there, and keeps going when the terminal closes.

Launching. The CLI has no webserver to talk to, so it does what the GraphQL mutation
`launchPartitionBackfill` does internally (dagster_graphql `create_and_launch_partition_backfill`):
build a `PartitionBackfill` from an exact asset-partition subset and `instance.add_backfill` it.
The subset is exact per (asset, partition): unchanged upstream assets (keyframes when only OCR
changed) are not in it, so they are not re-materialised.

Chunking: at most N partitions per run. Two limits act together:
- the assets' `BackfillPolicy.multi_run(MAX_PARTITIONS_PER_RUN)` (per_media.py): Dagster splits a
  backfill into runs of at most that many *contiguous* partitions (in partition-add order). That
  policy is fixed when the code location loads, so the daemon of `make dev` may use another value
  than the N a user gives on the command line;
- so the CLI launches one backfill per chunk of N partitions (taken in partition-add order, so a
  chunk is contiguous wherever the stale set is), all sharing the tag `medialens/reanalyse=<id>`.
  A chunk of N partitions is then at most one run per contiguous range even when the policy's
  limit is larger. When N exceeds the policy's limit the policy wins (runs of that limit);
  a daemon started by `wait` loads the code location with MEDIALENS_MAX_PARTITIONS_PER_RUN=N so
  there N holds in both directions.

Progress. Backfills only move while `dagster-daemon` runs (backfill loop every 30 s). `wait` uses the
daemon of `make dev` when its heartbeat is fresh, otherwise starts `dagster-daemon run -m
media_assets.definitions` with the same environment for the duration and stops it afterwards.

Report. Before launching, the manifests of the planned (asset, partition) pairs are snapshot;
afterwards `report` compares them: partitions redone, version old -> new, count deltas (every
integer field of the manifest) and for OCR the lines added/removed. It is written to
`<store>/reports/reanalyse-<id>.json`, whose path every backfill carries in its tags.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetKey, AssetSelection, DagsterEventType, DagsterInstance, DagsterRunStatus, Definitions
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionStatus, PartitionBackfill
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id

from media_assets.plumbing.dead_runs import end_dead_runs
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.per_media import MAX_PARTITIONS_PER_RUN
from media_assets.plumbing.staleness import StalePartition, find_stale, recorded_versions
from resources.store import MediaStore

GROUP_TAG = "medialens/reanalyse"
REPORT_TAG = "medialens/report"
MAX_PER_RUN_ENV = "MEDIALENS_MAX_PARTITIONS_PER_RUN"
STOP_GRACE_S = 5.0  # a daemon (and its runs) stops this long after SIGINT, or is killed
CANCEL_WAIT_S = 4.0  # how long an interrupted `--wait` waits for its runs to end CANCELED
DAEMON_FRESH_S = 75.0  # heartbeats come every 30 s; two missed ones mean no daemon
POLL_S = 2.0


class UnknownAsset(ValueError):
    """An asset name that is not a per-media asset of the code location."""


@dataclass(frozen=True)
class PlannedPartition:
    asset: str
    partition: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Plan:
    """What a re-analysis will redo: exact (asset, partition) pairs, partitions in add order."""

    items: list[PlannedPartition]
    partitions: list[str]  # distinct, in partition-add order
    skipped: list[PlannedPartition] = field(default_factory=list)  # stale, but an input is missing

    @property
    def assets(self) -> list[str]:
        return sorted({i.asset for i in self.items})

    def chunks(self, max_per_run: int) -> list[list[str]]:
        n = max(1, max_per_run)
        return [self.partitions[i : i + n] for i in range(0, len(self.partitions), n)]


def per_media_assets(defs: Definitions) -> list[str]:
    graph = defs.resolve_asset_graph()
    return [
        k.to_user_string()
        for k in graph.toposorted_asset_keys
        if graph.get(k).partitions_def is not None and graph.get(k).is_materializable
    ]


def plan(instance: DagsterInstance, defs: Definitions, assets: Sequence[str] | None, all_stale: bool) -> Plan:
    """The stale partitions of `assets` and of their dependants (every stale one with `all_stale`).

    A dependant is included where its staleness comes from its own version or from a planned
    asset of the same partition, not where only an unnamed stale asset upstream makes it stale
    (re-running it would leave it stale). Pairs whose input was never materialised (a file that
    failed to ingest) are skipped: they would fail again.
    """
    known = per_media_assets(defs)
    if not all_stale:
        if not assets:
            raise UnknownAsset("name at least one --asset, or use --all-stale")
        unknown = [a for a in assets if a not in known]
        if unknown:
            raise UnknownAsset(f"unknown asset(s) {', '.join(unknown)}; per-media assets: {', '.join(known)}")
    graph = defs.resolve_asset_graph()
    if all_stale:
        wanted = set(known)
        named = set(known)
    else:
        named = set(assets or [])
        selected = AssetSelection.assets(*(AssetKey.from_user_string(a) for a in named)).downstream()
        wanted = {k.to_user_string() for k in selected.resolve(graph)} & set(known)

    rows: list[StalePartition] = find_stale(instance, defs)  # topological order of assets
    present = {a: set(recorded_versions(instance, AssetKey.from_user_string(a))) for a in known}
    planned: dict[str, set[str]] = {}
    items: list[PlannedPartition] = []
    skipped: list[PlannedPartition] = []
    for r in rows:
        if r.asset not in wanted:
            continue
        key = AssetKey.from_user_string(r.asset)
        parents = [p.to_user_string() for p in graph.get(key).parent_entity_keys if p.to_user_string() in present]
        via_planned = any(p in planned.get(r.partition, set()) for p in parents)
        if r.asset not in named and r.reason.startswith("upstream stale") and not via_planned:
            continue
        item = PlannedPartition(r.asset, r.partition, r.reason)
        missing = [p for p in parents if r.partition not in present[p] and p not in planned.get(r.partition, set())]
        if missing:
            skipped.append(item)
            continue
        planned.setdefault(r.partition, set()).add(r.asset)
        items.append(item)
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    partitions = [p for p in order if p in planned]
    return Plan(items=items, partitions=partitions, skipped=skipped)


def contiguous_runs(partitions: Sequence[str], order: Sequence[str], limit: int) -> int:
    """How many runs a policy of `limit` partitions per run makes of these (contiguous ranges only)."""
    index = {p: i for i, p in enumerate(order)}
    positions = sorted(index[p] for p in partitions if p in index)
    runs, length, prev = 0, 0, None
    for pos in positions:
        if prev is None or pos != prev + 1 or length >= limit:
            runs += 1
            length = 0
        length += 1
        prev = pos
    return runs


def expected_runs(instance: DagsterInstance, p: Plan, max_per_run: int) -> int:
    order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    limit = min(max_per_run, MAX_PARTITIONS_PER_RUN) if max_per_run > 0 else MAX_PARTITIONS_PER_RUN
    return sum(contiguous_runs(chunk, order, limit) for chunk in p.chunks(max_per_run))


def report_path(store: MediaStore, group: str) -> Path:
    return store.path / "reports" / f"reanalyse-{group}.json"


def launch(
    instance: DagsterInstance,
    defs: Definitions,
    p: Plan,
    max_per_run: int,
    title: str | None = None,
    group: str | None = None,
    report: str | None = None,
) -> list[str]:
    """One backfill per chunk of `max_per_run` partitions (see the module docstring); their ids."""
    graph = defs.resolve_asset_graph()
    group = group or uuid.uuid4().hex[:8]
    by_partition: dict[str, list[str]] = {}
    for item in p.items:
        by_partition.setdefault(item.partition, []).append(item.asset)
    chunks = p.chunks(max_per_run)
    ids: list[str] = []
    for n, chunk in enumerate(chunks, 1):
        pairs = {AssetKeyPartitionKey(AssetKey.from_user_string(a), part) for part in chunk for a in by_partition[part]}
        tags = {GROUP_TAG: group, "medialens/launched_by": "cli", "medialens/chunk": f"{n}/{len(chunks)}"}
        if report:
            tags[REPORT_TAG] = report
        backfill_id = make_new_backfill_id()
        backfill = PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags=tags,
            dynamic_partitions_store=instance,
            asset_graph_subset=AssetGraphSubset.from_asset_partition_set(pairs, graph),
            title=f"{title or 'medialens reanalyse'} ({n}/{len(chunks)})" if len(chunks) > 1 else title,
            description=f"medialens reanalyse {group}: {len(chunk)} partition(s) of "
            f"{', '.join(sorted({a for part in chunk for a in by_partition[part]}))}",
            run_config=None,
        )
        instance.add_backfill(backfill)
        ids.append(backfill_id)
    return ids


# -- the daemon ----------------------------------------------------------------------------------
def daemon_running(instance: DagsterInstance, fresh_s: float = DAEMON_FRESH_S) -> bool:
    """Whether a dagster-daemon posted a backfill heartbeat to this instance recently."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < fresh_s


def create_instance_storage(home: str) -> None:
    """Create a new sqlite instance's tables in this process, once. Dagster's sqlite storages create
    their schema on first open, and a new daemon opens the instance in several processes at once
    (itself, its code server, the run queue): racing creators left `alembic_version` with two heads
    here ("has more than one head present"), and that instance never opened again."""
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = home  # dagster.yaml may refer to it
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(home)):
            pass
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved


def start_daemon(log_file: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`dagster-daemon run` on this code location and instance (DAGSTER_HOME of this process)."""
    home = (env or {}).get("DAGSTER_HOME") or os.environ.get("DAGSTER_HOME")
    if home and (Path(home) / "dagster.yaml").exists():
        create_instance_storage(home)
    exe = Path(sys.executable).parent / "dagster-daemon"
    cmd = [str(exe), "run", "-m", "media_assets.definitions"]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            cmd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its code server and run workers form one group we can stop
        )


def stop_daemon(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT (the daemon's clean shutdown), then the whole group it started if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # the code server it started exits on its own when heartbeats stop; do not leave it behind
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)


def backfill_runs(instance: DagsterInstance, ids: Iterable[str]) -> list[Any]:
    runs: list[Any] = []
    for i in ids:
        runs.extend(instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: i})))
    return runs


def wait(
    instance: DagsterInstance,
    ids: Sequence[str],
    progress: Callable[[str], None] = lambda _msg: None,
    timeout: float = 3600.0,
    max_per_run: int | None = None,
    log_file: Path | None = None,
) -> dict[str, str]:
    """Poll until every backfill is finished (starting a daemon when none runs); final statuses."""
    terminal = {s.value for s in BULK_ACTION_TERMINAL_STATUSES}
    proc: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + timeout
    last = ""
    statuses: dict[str, str] = {}
    try:
        while True:
            if proc is None and not daemon_running(instance):
                env = {MAX_PER_RUN_ENV: str(max_per_run)} if max_per_run else {}
                home = Path(os.environ.get("DAGSTER_HOME", "."))
                proc = start_daemon(log_file or home / "logs" / "reanalyse-daemon.log", env)
                progress(f"no dagster-daemon was running: started one (pid {proc.pid}) for the duration")
            elif proc is not None and proc.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with code {proc.returncode} (log: {log_file})")
            statuses = {}
            for i in ids:
                b = instance.get_backfill(i)
                statuses[i] = b.status.value if b else "MISSING"
            runs = backfill_runs(instance, ids)
            done = sum(r.status == DagsterRunStatus.SUCCESS for r in runs)
            failed = sum(r.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED) for r in runs)
            line = f"backfills: {', '.join(sorted(set(statuses.values())))}; runs: {len(runs)} launched, {done} done"
            line += f", {failed} failed" if failed else ""
            if line != last:
                progress(line)
                last = line
            if all(s in terminal or s == "MISSING" for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfills {', '.join(ids)} not finished after {timeout:.0f} s: {statuses}")
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # Ctrl-C/SIGTERM: the user wants this re-analysis stopped, not left running unattended.
        cancel(instance, ids, progress)
        raise
    finally:
        if proc is not None:
            stop_daemon(proc, grace_s=STOP_GRACE_S)
            end_dead_runs(instance, progress)  # runs whose workers went down with our daemon
            # a daemon started for the duration is not one that `medialens health` should expect
            instance.wipe_daemon_heartbeats()


def cancel(instance: DagsterInstance, ids: Sequence[str], progress: Callable[[str], None]) -> None:
    """Stop the backfills `ids`: no new runs (CANCELING: a daemon completes it), queued runs
    canceled, runs in progress asked to stop through the run launcher (their worker ends them
    CANCELED within seconds: media_assets/plumbing/run_guard.py). What they finished is kept."""
    for backfill_id in ids:
        backfill = instance.get_backfill(backfill_id)
        if backfill is not None and backfill.status not in BULK_ACTION_TERMINAL_STATUSES:
            instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
    running: list[str] = []
    for run in backfill_runs(instance, ids):
        if run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, "Run canceled: `medialens reanalyse --wait` was interrupted.")
        elif run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
            with contextlib.suppress(Exception):  # a launcher that cannot reach it: ended as dead below
                instance.run_launcher.terminate(run.run_id)
            running.append(run.run_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while running and time.monotonic() < deadline:
        time.sleep(0.5)
        running = [r for r in running if (x := instance.get_run_by_id(r)) is not None and not x.is_finished]
    progress(f"canceled backfill(s) {', '.join(ids)}" + (f"; still stopping: {', '.join(running)}" if running else ""))


# -- the report ----------------------------------------------------------------------------------
def _texts(store: MediaStore, asset: str, manifest: Mapping[str, Any] | None) -> list[str] | None:
    """The texts an asset found, where that is what a user compares (OCR lines)."""
    if not manifest or asset != "ocr_text" or not manifest.get("lines_table"):
        return None
    try:
        return [str(r["text"]) for r in store.read_table(manifest["lines_table"]).to_pylist()]
    except (OSError, KeyError):
        return None


def _transcript_text(store: MediaStore, asset: str, manifest: Mapping[str, Any] | None) -> str | None:
    """A transcript's full text, to compare versions by word error rate."""
    if not manifest or asset != "transcript" or not manifest.get("table"):
        return None
    try:
        return " ".join(str(r["text"]) for r in store.read_table(manifest["table"]).select(["text"]).to_pylist())
    except (OSError, KeyError):
        return None


def snapshot(instance: DagsterInstance, store: MediaStore, p: Plan) -> dict[str, Any]:
    """Manifests (and latest materialisation ids) of the planned pairs, before the re-analysis."""
    out: dict[str, Any] = {}
    for asset in p.assets:
        latest = instance.get_latest_storage_id_by_partition(
            AssetKey.from_user_string(asset), DagsterEventType.ASSET_MATERIALIZATION
        )
        for item in (i for i in p.items if i.asset == asset):
            m = store.read_manifest(asset, item.partition)
            out[f"{asset}/{item.partition}"] = {
                "storage_id": latest.get(item.partition),
                "manifest": m,
                "texts": _texts(store, asset, m),
                "transcript": _transcript_text(store, asset, m),
            }
    return out


def _counts(m: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: v for k, v in (m or {}).items() if isinstance(v, int) and not isinstance(v, bool)}


def build_report(
    instance: DagsterInstance,
    defs: Definitions,
    store: MediaStore,
    p: Plan,
    before: Mapping[str, Any],
    group: str,
    ids: Sequence[str],
    statuses: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Per asset: partitions redone, versions old -> new, count deltas; per partition the detail."""
    after = snapshot(instance, store, p)
    still = {(s.asset, s.partition) for s in find_stale(instance, defs)}
    assets: dict[str, Any] = {}
    for item in p.items:
        k = f"{item.asset}/{item.partition}"
        old, new = before.get(k, {}), after.get(k, {})
        om, nm = old.get("manifest") or {}, new.get("manifest") or {}
        redone = new.get("storage_id") is not None and new.get("storage_id") != old.get("storage_id")
        a = assets.setdefault(
            item.asset,
            {"planned": 0, "redone": 0, "still_stale": 0, "versions": {}, "count_deltas": {}, "partitions": {}},
        )
        a["planned"] += 1
        a["redone"] += int(redone)
        a["still_stale"] += int((item.asset, item.partition) in still)
        if redone:
            pair = f"{om.get('version')} -> {nm.get('version')}"
            a["versions"][pair] = a["versions"].get(pair, 0) + 1
        oc, nc = _counts(om), _counts(nm)
        deltas = {c: nc.get(c, 0) - oc.get(c, 0) for c in sorted(set(oc) | set(nc))}
        for c, d in deltas.items():
            a["count_deltas"][c] = a["count_deltas"].get(c, 0) + d
        detail: dict[str, Any] = {
            "redone": redone,
            "version": [om.get("version"), nm.get("version")],
            "counts": {c: [oc.get(c), nc.get(c)] for c in deltas if oc.get(c) != nc.get(c)},
        }
        ot, nt = old.get("texts"), new.get("texts")
        if ot is not None or nt is not None:
            detail["lines_added"] = sorted(set(nt or []) - set(ot or []))
            detail["lines_removed"] = sorted(set(ot or []) - set(nt or []))
            a["lines_added"] = a.get("lines_added", 0) + len(detail["lines_added"])
            a["lines_removed"] = a.get("lines_removed", 0) + len(detail["lines_removed"])
        otx, ntx = old.get("transcript"), new.get("transcript")
        if redone and otx is not None and ntx is not None:
            from media_assets.analysis.transcript import word_error_rate

            # how much the words changed between the versions (the old text as the reference)
            detail["wer_vs_previous"] = round(word_error_rate(otx, ntx), 4) if otx.strip() else None
            if detail["wer_vs_previous"] is not None:
                a.setdefault("wer_vs_previous", []).append(detail["wer_vs_previous"])
        a["partitions"][item.partition] = detail
    for a in assets.values():
        wers = a.pop("wer_vs_previous", None)
        if wers:
            a["mean_wer_vs_previous"] = round(sum(wers) / len(wers), 4)
    runs = backfill_runs(instance, ids)
    return {
        "id": group,
        "backfills": list(ids),
        "statuses": dict(statuses or {}),
        "runs": len(runs),
        "runs_succeeded": sum(r.status == DagsterRunStatus.SUCCESS for r in runs),
        "partitions": len(p.partitions),
        "assets": assets,
    }


def write_report(store: MediaStore, group: str, report: Mapping[str, Any]) -> Path:
    path = report_path(store, group)
    store.write_bytes(path, json.dumps(report, indent=2, default=str).encode(), what="re-analysis report")
    return path
