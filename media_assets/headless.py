"""Analyse files without the UI: register them as partitions and run the job in this process.

Each file is its own in-process run, so a bad file fails alone while models (cached per process)
load once for the whole command. Runs land in the same Dagster instance as the UI's, so the UI,
`medialens stale` and backfills see them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions

from media_assets.analysis.inspect import Limits
from media_assets.config import Paths, current_settings
from media_assets.jobs import ANALYSE_JOB_NAME
from media_assets.partitions import MEDIA_PARTITIONS_NAME
from media_assets.registration import admit, register
from media_assets.staleness import find_stale
from resources.store import MediaStore

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Written into a DAGSTER_HOME that has no dagster.yaml (same settings as dagster_home/dagster.yaml).
DEFAULT_INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
"""


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
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DEFAULT_INSTANCE_YAML)
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


def analyse(
    files: Iterable[str],
    defs: Definitions,
    paths: Paths,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[FileResult]:
    """Admit, register and analyse each file; a bad one is reported and the rest go on."""
    instance = dagster_instance(paths)
    store: MediaStore = (defs.resources or {})["store"]
    limits = Limits.from_params(current_settings().of("media_file"))
    job = defs.resolve_job_def(ANALYSE_JOB_NAME)
    known = set(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    targets = expand_paths(files)
    results: list[FileResult] = []
    for i, path in enumerate(targets, 1):
        name = path.name
        if not path.exists():
            results.append(FileResult(name, None, "rejected", f"{path}: no such file"))
            progress(f"[{i}/{len(targets)}] {name}: rejected: no such file")
            continue
        a = admit(path, limits, known)
        if a.status == "rejected":
            results.append(FileResult(name, None, "rejected", f"{name}: {a.reason}"))
            progress(f"[{i}/{len(targets)}] {name}: rejected: {a.reason}")
            continue
        assert a.key is not None
        if a.status == "new":
            register(store, a, path.resolve(), move=False)
            instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, [a.key])
            known.add(a.key)
        selection = None
        if a.status != "new":
            # a known file: redo only what a settings or model change made stale (and what reads it)
            stale = sorted({s.asset for s in find_stale(instance, defs) if s.partition == a.key})
            if not stale:
                r = FileResult(name, a.key, "ok", f"same bytes as {a.key}, already analysed")
                summarise(store, r)
                results.append(r)
                progress(f"[{i}/{len(targets)}] {name}: already analysed as {a.key}")
                continue
            selection = [AssetKey.from_user_string(k) for k in stale]
            progress(f"[{i}/{len(targets)}] {name}: re-analysing stale {', '.join(stale)} of {a.key}")
        progress(f"[{i}/{len(targets)}] {name}: analysing as {a.key} ...")
        started = time.perf_counter()
        run = job.execute_in_process(
            instance=instance,
            partition_key=a.key,
            run_config=QUIET,
            raise_on_error=False,
            asset_selection=selection,
            tags={"medialens/source": name, "medialens/launched_by": "cli"},
        )
        r = FileResult(name, a.key, "ok" if run.success else "failed", None if run.success else failure_reason(run))
        r.seconds = round(time.perf_counter() - started, 2)
        summarise(store, r)
        results.append(r)
        progress(f"[{i}/{len(targets)}] {name}: {r.status}{': ' + r.reason if r.reason else ''} ({r.seconds} s)")
    return results


def refresh_people(defs: Definitions, paths: Paths) -> dict[str, Any]:
    """Re-cluster the library's faces into person dossiers (a run of `person_dossiers`, recorded in
    the Dagster instance like one launched from the UI); returns the dossiers' manifest."""
    from dagster import materialize

    from media_assets.people import ASSET, person_dossiers

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
