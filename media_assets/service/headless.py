"""Analyse files without the UI: register them as partitions and run the job in this process.

New files share one in-process run (a partition range), so steps start and models load once for
all of them; a file that failed in it is retried alone, so a bad file fails alone. Runs land in the
same Dagster instance as the UI's, so the UI, `medialens stale` and backfills see them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, Definitions, execute_job, reconstructable
from dagster._core.storage.tags import MAX_RETRIES_TAG, PARTITION_NAME_TAG

from media_assets.analysis.inspect import Limits
from media_assets.assets.jobs import analyse_media_in_this_process
from media_assets.plumbing.config import Paths, current_settings
from media_assets.plumbing.dead_runs import end_dead_runs
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME, range_chunks, range_tags
from media_assets.plumbing.per_media import failed_partitions
from media_assets.plumbing.registration import admit, register
from media_assets.plumbing.staleness import missing_by_partition
from resources.store import MediaStore

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


# What earlier versions wrote into a new DAGSTER_HOME (Dagster's stock sqlite storage): replaced by
# instance_yaml() when found unchanged, so homes made before get the batching storage too.
EARLIER_INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
"""


def storage_config(home: Path) -> dict[str, Any]:
    """dagster.yaml's `storage:` for medialens: Dagster's sqlite storage in `home`, asset events
    batched (media_assets/plumbing/event_storage.py). Spelled out, the file may be read without DAGSTER_HOME."""
    base_dir = str(home.absolute())
    return {
        "custom": {
            "module": "media_assets.plumbing.event_storage",
            "class": "BatchingSqliteStorage",
            "config": {"base_dir": base_dir},
        }
    }


# Crash safety, as in dagster_home/dagster.yaml: the launcher that tells run monitoring when a run's
# worker is gone, monitoring that then fails it and frees its pool slots, one retry of a crashed run.
CRASH_SAFETY: dict[str, Any] = {
    "run_launcher": {"module": "media_assets.plumbing.run_launcher", "class": "MonitoredRunLauncher"},
    "run_monitoring": {
        "enabled": True,
        "poll_interval_seconds": 15,
        "start_timeout_seconds": 180,
        "cancel_timeout_seconds": 60,
        "free_slots_after_run_end_seconds": 15,
    },
    "run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False},
}


# The run queue looks for runs to start every second, not Dagster's default 5 s: a file dropped into
# the inbox waits for the sensor's tick and then for the queue (bench/realtime.py's inbox path).
QUEUE: dict[str, Any] = {
    "run_coordinator": {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"dequeue_interval_seconds": 1},
    }
}


def _batching_yaml(home: Path) -> str:
    """What the previous version wrote: the earlier settings plus the batching storage."""
    return EARLIER_INSTANCE_YAML + yaml.safe_dump({"storage": storage_config(home)}, sort_keys=False)


def instance_yaml(home: Path) -> str:
    """The dagster.yaml written into a DAGSTER_HOME that has none: dagster_home/dagster.yaml's
    settings (the earlier ones, the batching storage, crash safety, the run queue's pace)."""
    return _crash_safe_yaml(home) + yaml.safe_dump(QUEUE, sort_keys=False)


def _crash_safe_yaml(home: Path) -> str:
    """What the version before wrote: the batching storage and crash safety."""
    return _batching_yaml(home) + yaml.safe_dump(CRASH_SAFETY, sort_keys=False)


def earlier_instance_yamls(home: Path) -> set[str]:
    """Texts earlier versions of the CLI wrote into `home`: replaced by instance_yaml() when found
    unchanged (a file the user edited is left alone)."""
    return {EARLIER_INSTANCE_YAML, _batching_yaml(home), _crash_safe_yaml(home)}


@dataclass
class FileResult:
    """One line of the `analyse` report (the `--json` result object, plus summary columns)."""

    source_name: str
    key: str | None
    status: str  # "ok" | "rejected" | "failed"
    reason: str | None = None
    kind: str | None = None
    duration_s: float | None = None
    keyframes: int | None = None
    audio_s: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def dagster_instance(paths: Paths) -> DagsterInstance:
    """The instance the UI uses: DAGSTER_HOME, else ./dagster_home, else one under MEDIALENS_HOME."""
    if not os.environ.get("DAGSTER_HOME"):
        local = Path("dagster_home")
        home = local.absolute() if (local / "dagster.yaml").exists() else paths.home / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["DAGSTER_HOME"] = str(home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() in earlier_instance_yamls(home):
        config.write_text(instance_yaml(home))  # same folders: what is stored there stays
    return DagsterInstance.get()


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files named directly, plus the files inside named folders (hidden ones skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        else:
            out.append(p)
    return out


def failure_reason(result: Any) -> str:
    """The first step failure of a run, as the user-facing message our assets raise."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"{event.step_key}: {data.user_failure_data.description}"
        err = data.error
        while err is not None and err.cause is not None:
            err = err.cause
        return f"{event.step_key}: {err.message.strip() if err else 'failed'}"
    return "run failed"


def summarise(store: MediaStore, r: FileResult) -> None:
    """Fill the summary columns from what the assets wrote."""
    if r.key is None:
        return
    media = store.read_manifest("media_file", r.key) or {}
    frames = store.read_manifest("keyframes", r.key) or {}
    audio = store.read_manifest("audio_track", r.key) or {}
    r.kind = media.get("kind")
    r.duration_s = media.get("duration_s")
    r.keyframes = frames.get("count")
    r.audio_s = audio.get("duration_s") if audio.get("path") else None


class PoolBusy(RuntimeError):
    """A run gave up waiting for a pool slot that a live run keeps (the message names it)."""


def _gave_up_waiting(result: Any) -> str | None:
    """The message of a run that ended because it waited too long for a pool slot."""
    for event in result.all_events:
        if event.is_run_failure:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            if error is not None and error.cls_name == "PoolWaitTimeout":
                return str(error.message).strip()
    return None


class Interrupted(KeyboardInterrupt):
    """A run ended CANCELED because this command was interrupted (Ctrl-C, SIGTERM): stop here."""


def _run(
    instance: DagsterInstance,
    keys: list[str],
    selection: list[AssetKey] | None,
    tags: dict[str, str],
    progress: Callable[[str], None],
) -> Any:
    """One run of the analysis job over `keys` (contiguous in partition order), in this process.

    Through `execute_job` with the job's own executor (media_assets/plumbing/run_guard.py), so this run
    records this process as its worker (in its tags, as the run starts), reports and bounds pool
    waits, and ends CANCELED on Ctrl-C. Dead runs are ended first: a killed earlier command must
    not make this one wait for its pool slot. `dagster/max_retries` 0: the daemon's run retries must not redo a CLI run
    behind its back (running the command again does)."""
    end_dead_runs(instance, progress)
    partition = {PARTITION_NAME_TAG: keys[0]} if len(keys) == 1 else range_tags(keys[0], keys[-1])
    result = execute_job(
        reconstructable(analyse_media_in_this_process),
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        asset_selection=selection,
        tags={**tags, **partition, "medialens/launched_by": "cli", MAX_RETRIES_TAG: "0"},
    )
    run = instance.get_run_by_id(result.run_id)
    if run is not None and run.status == DagsterRunStatus.CANCELED:
        raise Interrupted(f"run {result.run_id} was canceled")
    gave_up = None if result.success else _gave_up_waiting(result)
    if gave_up:
        raise PoolBusy(gave_up.split("PoolWaitTimeout: ", 1)[-1])
    return result


def _segments(keys: list[str], order: list[str]) -> list[list[str]]:
    """`keys` as runs of neighbours in partition order (a range run covers everything between)."""
    return [members for _, _, members in range_chunks(keys, order, max(1, len(keys)))]


def analyse(
    files: Iterable[str],
    defs: Definitions,
    paths: Paths,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[FileResult]:
    """Admit, register and analyse each file; a bad one is reported and the rest go on.

    New files go through one run together (a partition range: every step starts once and each
    model loads once for all of them, FACTS.md: step start ~0.85 s); a file whose analysis failed
    in that run is then run alone for what it still lacks, so its failure and reason are its own.
    A known file re-runs only its stale assets.
    """
    instance = dagster_instance(paths)
    store: MediaStore = (defs.resources or {})["store"]
    limits = Limits.from_params(current_settings().of("media_file"))
    known = set(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    targets = expand_paths(files)
    results: list[FileResult] = []
    batch: list[tuple[FileResult, str]] = []  # new files, analysed in one run
    singles: list[tuple[FileResult, list[AssetKey]]] = []  # known files with stale assets
    stale_now: dict[str, set[str]] | None = None
    n = len(targets)
    for i, path in enumerate(targets, 1):
        name = path.name
        if not path.exists():
            results.append(FileResult(name, None, "rejected", f"{path}: no such file"))
            progress(f"[{i}/{n}] {name}: rejected: no such file")
            continue
        a = admit(path, limits, known)
        if a.status == "rejected":
            results.append(FileResult(name, None, "rejected", f"{name}: {a.reason}"))
            progress(f"[{i}/{n}] {name}: rejected: {a.reason}")
            continue
        assert a.key is not None
        r = FileResult(name, a.key, "ok")
        results.append(r)
        if a.status == "new":
            register(store, a, path.resolve(), move=False)
            instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, [a.key])
            known.add(a.key)
            batch.append((r, a.key))
            progress(f"[{i}/{n}] {name}: new, as {a.key}")
            continue
        if any(key == a.key for _, key in batch) or any(s.key == a.key for s, _ in singles):
            r.reason = f"same bytes as another file of this command ({a.key})"
            progress(f"[{i}/{n}] {name}: {r.reason}")
            continue
        if stale_now is None:  # one event-log read for all known files
            stale_now = missing_by_partition(instance, defs, known)
        stale = sorted(stale_now.get(a.key, set()))
        if not stale:
            r.reason = f"same bytes as {a.key}, already analysed"
            progress(f"[{i}/{n}] {name}: already analysed as {a.key}")
            continue
        singles.append((r, [AssetKey.from_user_string(k) for k in stale]))
        progress(f"[{i}/{n}] {name}: will re-analyse stale {', '.join(stale)} of {a.key}")

    try:
        if batch:
            by_key = {key: r for r, key in batch}
            order = list(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
            segments = _segments([key for _, key in batch], order)
            selection: list[AssetKey] | None = None
            for _round in range(3):  # a failed file comes out of the batch; the others go on together
                failed_now: dict[str, str] = {}
                for seg in segments:
                    progress(f"analysing {len(seg)} file(s) in one run ...")
                    started = time.perf_counter()
                    run = _run(instance, seg, selection, {"medialens/files": str(len(seg))}, progress)
                    took = time.perf_counter() - started
                    for key in seg:
                        by_key[key].seconds = round((by_key[key].seconds or 0) + took / len(seg), 2)
                    if run.success:
                        progress(f"run of {len(seg)} file(s) succeeded in {took:.1f} s")
                        continue
                    named = failed_partitions(run.all_events)
                    if not named or not set(named) <= set(seg):  # not a per-file failure: each file alone
                        named = {}
                        for key in seg:
                            failed_now.setdefault(key, "")
                    failed_now.update(named)
                    which = ", ".join(named) or "see the run"
                    progress(f"run of {len(seg)} file(s) had failures in {took:.1f} s: {which}")
                if not failed_now:
                    break
                for key, reason in failed_now.items():
                    if reason:  # its own failure, with the reason our assets gave: done with it
                        by_key[key].status, by_key[key].reason = "failed", reason
                        by_key.pop(key)
                todo = missing_by_partition(instance, defs, set(by_key))
                keys = [k for k in order if k in todo]
                if not keys:
                    break
                selection = sorted({AssetKey.from_user_string(a) for k in keys for a in todo[k]}, key=str)
                segments = _segments(keys, order)
            else:
                todo = missing_by_partition(instance, defs, set(by_key))
                for key in todo:
                    singles.append((by_key[key], [AssetKey.from_user_string(a) for a in sorted(set(todo[key]))]))

        for r, selection in singles:
            assert r.key is not None
            progress(f"{r.source_name}: analysing {', '.join(k.to_user_string() for k in selection)} of {r.key} ...")
            started = time.perf_counter()
            run = _run(instance, [r.key], selection, {"medialens/source": r.source_name}, progress)
            r.seconds = round((r.seconds or 0) + time.perf_counter() - started, 2)
            r.status = "ok" if run.success else "failed"
            r.reason = None if run.success else failure_reason(run)
            progress(f"{r.source_name}: {r.status}{': ' + r.reason if r.reason else ''} ({r.seconds} s)")
    except PoolBusy as exc:  # every later run would wait the same way: stop here (the guard said why)
        unfinished = missing_by_partition(instance, defs, {r.key for r in results if r.key and r.status == "ok"})
        for r in results:
            if r.key in unfinished and r.status == "ok":
                r.status, r.reason = "failed", str(exc)
    for r in results:
        summarise(store, r)
    return results


def refresh_people(defs: Definitions, paths: Paths) -> dict[str, Any]:
    """Re-cluster the library's faces into person dossiers (a run of `person_dossiers`, recorded in
    the Dagster instance like one launched from the UI); returns the dossiers' manifest."""
    from dagster import materialize

    from media_assets.assets.person_dossiers import ASSET, person_dossiers

    store: MediaStore = (defs.resources or {})["store"]
    result = materialize(
        [person_dossiers],
        instance=dagster_instance(paths),
        resources={"store": store},
        run_config=QUIET,
        raise_on_error=False,
        tags={"medialens/launched_by": "cli"},
    )
    if not result.success:
        raise RuntimeError(f"person_dossiers failed: {failure_reason(result)}")
    manifest = store.read_manifest(ASSET, "library")
    assert manifest is not None
    return manifest
