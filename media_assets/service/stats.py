"""`medialens stats [--json] [--runs N]`: how big the library is and what analysing it costs.

- media: registered partitions (the Dagster instance's `media` partitions and whatever the store
  has a `media_file` manifest for), by kind from those manifests; hours analysed is the sum of
  their durations.
- assets: per asset, the partitions materialised and what their latest materialisations cost,
  from the per-partition metadata `for_each_partition` records (wall_s, cpu_s, model_s,
  peak_rss_mib; media_assets/plumbing/per_media.py), with throughput as media seconds per wall second.
  Materialisations older than that metadata count as partitions, not in the sums (`timed`).
- runs: the last N runs from the instance's run records: status, wall time, partitions, media
  seconds per wall second, and per asset the time its steps took in those runs.
- store bytes (every file under the store) and vectors per Qdrant collection (the embedded
  folder's lock is respected: a stats call waits for an analysis that holds it, up to
  QDRANT_LOCK_WAIT_S, and then reports the vectors as unavailable rather than failing).

Only reads: nothing here writes to the store, the instance or Qdrant.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from media_assets.plumbing.config import Paths

if TYPE_CHECKING:  # Dagster is imported when stats are collected, not when the CLI builds its parser
    from dagster import AssetKey, DagsterInstance

    from resources.store import MediaStore

KINDS = ("video", "image", "audio")
# The graph's order, for tables; assets not listed (added later) follow by name.
ASSET_ORDER = (
    "media_file",
    "keyframes",
    "audio_track",
    "ocr_text",
    "poses",
    "faces",
    "safety",
    "tags",
    "transcript",
    "summary",
    "search_index",
    "person_dossiers",
)
QDRANT_LOCK_WAIT_S = 20.0


# -- media and store -------------------------------------------------------------------------------
def media_keys(instance: DagsterInstance, store: MediaStore) -> list[str]:
    """Registered partitions plus every key the store holds a media_file manifest for."""
    from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME

    keys = dict.fromkeys(instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    keys.update(dict.fromkeys(store.manifest_keys("media_file")))
    return list(keys)


def media_facts(store: MediaStore, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Key -> {kind, duration_s, size_bytes} for the media the store has ingested."""
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        m = store.read_manifest("media_file", key)
        if m is not None:
            out[key] = {
                "kind": m.get("kind"),
                "duration_s": float(m.get("duration_s") or 0.0),
                "size_bytes": int(m.get("size_bytes") or 0),
            }
    return out


def tree_bytes(root: Path) -> int:
    """Bytes of every regular file under `root` (links not followed); 0 when it does not exist."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:  # removed while we walked (a run's scratch)
                continue
            if S_ISREG(st.st_mode):
                total += st.st_size
    return total


def vector_counts(paths: Paths) -> tuple[dict[str, int], str | None]:
    """Points per Qdrant collection, and why they could not be counted (None when they were)."""
    from resources import build_resources
    from resources.qdrant import QdrantResource

    qdrant: QdrantResource = build_resources(paths)["qdrant"]
    if qdrant.embedded:
        if not Path(qdrant.path).exists():
            return {}, None  # nothing analysed into vectors yet; do not create the folder
        qdrant = QdrantResource(path=qdrant.path, lock_timeout_s=QDRANT_LOCK_WAIT_S)
    try:
        with qdrant.client() as c:
            names = sorted(col.name for col in c.get_collections().collections)
            return {name: int(c.count(name, exact=True).count) for name in names}, None
    except (TimeoutError, ConnectionError, OSError) as exc:
        return {}, f"{type(exc).__name__}: {exc}"


# -- per-asset totals from materialisation metadata ------------------------------------------------
def _number(metadata: dict[str, Any], key: str) -> float | None:
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def latest_metadata(instance: DagsterInstance, asset_key: AssetKey) -> dict[str, dict[str, Any]]:
    """Partition -> metadata of its latest materialisation."""
    from media_assets.plumbing.staleness import latest_records

    out: dict[str, dict[str, Any]] = {}
    for part, record in latest_records(instance, asset_key).items():
        mat = record.asset_materialization
        out[part] = dict(mat.metadata) if mat is not None else {}
    return out


def _ordered(names: Iterable[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(ASSET_ORDER)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 2) if den > 0 else None


def asset_totals(instance: DagsterInstance, media: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per asset that has materialisations."""
    from dagster import AssetKey

    rows = []
    names = [k.to_user_string() for k in instance.get_asset_keys()]
    for name in _ordered(names):
        key = AssetKey.from_user_string(name)
        by_partition = latest_metadata(instance, key)
        if not by_partition:
            latest = instance.get_latest_materialization_event(key)
            if latest is None:
                continue
            rows.append({"asset": name, "partitions": 0, "timed": 0, "materialised": True})
            continue
        timed = {p: md for p, md in by_partition.items() if _number(md, "wall_s") is not None}
        wall = sum(_number(md, "wall_s") or 0.0 for md in timed.values())
        cpu = sum(_number(md, "cpu_s") or 0.0 for md in timed.values())
        models = [m for m in (_number(md, "model_s") for md in timed.values()) if m is not None]
        peaks = [p for p in (_number(md, "peak_rss_mib") for md in timed.values()) if p is not None]
        media_s = sum(media.get(p, {}).get("duration_s", 0.0) for p in timed)
        rows.append(
            {
                "asset": name,
                "partitions": len(by_partition),
                "timed": len(timed),
                "total_s": round(wall, 2),
                "mean_s": round(wall / len(timed), 3) if timed else None,
                "cpu_s": round(cpu, 2),
                "model_s": round(sum(models), 2) if models else None,
                "peak_rss_mib": round(max(peaks), 1) if peaks else None,
                "media_s": round(media_s, 2),
                "media_s_per_s": _ratio(media_s, wall),
            }
        )
    return rows


# -- recent runs -----------------------------------------------------------------------------------
def run_throughput(instance: DagsterInstance, media: dict[str, dict[str, Any]], last: int) -> dict[str, Any]:
    """The last `last` runs (of any job): status, wall time, partitions, media seconds per wall
    second, and per asset the seconds its steps took in them. The totals' throughput counts the
    finished runs that analysed media partitions (not e.g. the library-wide person_dossiers)."""
    from dagster import DagsterEventType, RunsFilter

    records = instance.get_run_records(filters=RunsFilter(), limit=last) if last > 0 else []
    recent: list[dict[str, Any]] = []
    steps: dict[str, dict[str, float]] = {}
    by_status: dict[str, int] = {}
    for rec in records:
        run = rec.dagster_run
        status = run.status.value
        by_status[status] = by_status.get(status, 0) + 1
        mats = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        parts_by_asset: dict[str, set[str]] = {}
        for r in mats:
            event = r.event_log_entry.dagster_event
            if event is not None and event.asset_key is not None and event.partition:
                parts_by_asset.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
        partitions = set().union(*parts_by_asset.values()) if parts_by_asset else set()
        wall = (rec.end_time - rec.start_time) if rec.start_time and rec.end_time else None
        media_s = sum(media.get(p, {}).get("duration_s", 0.0) for p in partitions)
        recent.append(
            {
                "run_id": run.run_id,
                "job": run.job_name,
                "status": status,
                "started": rec.start_time,
                "wall_s": round(wall, 2) if wall is not None else None,
                "partitions": len(partitions),
                "media_s": round(media_s, 2),
                "media_s_per_s": _ratio(media_s, wall or 0.0),
            }
        )
        for stat in instance.get_run_step_stats(run.run_id):
            asset = stat.step_key
            if asset not in parts_by_asset or not (stat.start_time and stat.end_time):
                continue  # asset checks and steps that materialised nothing
            row = steps.setdefault(asset, {"steps": 0, "seconds": 0.0, "partitions": 0, "media_s": 0.0})
            row["steps"] += 1
            row["seconds"] += stat.end_time - stat.start_time
            row["partitions"] += len(parts_by_asset[asset])
            row["media_s"] += sum(media.get(p, {}).get("duration_s", 0.0) for p in parts_by_asset[asset])
    finished = [r for r in recent if r["wall_s"] is not None and r["partitions"]]
    wall_total = float(sum(r["wall_s"] for r in finished))
    media_total = float(sum(r["media_s"] for r in finished))
    return {
        "considered": len(recent),
        "by_status": by_status,
        "partitions": sum(r["partitions"] for r in recent),
        "wall_s": round(wall_total, 2),
        "media_s": round(media_total, 2),
        "media_s_per_s": _ratio(media_total, wall_total),
        "assets": [
            {
                "asset": name,
                "steps": int(steps[name]["steps"]),
                "seconds": round(steps[name]["seconds"], 2),
                "partitions": int(steps[name]["partitions"]),
                "media_s_per_s": _ratio(steps[name]["media_s"], steps[name]["seconds"]),
            }
            for name in _ordered(steps)
        ],
        "recent": recent,
    }


# -- the whole picture -----------------------------------------------------------------------------
def collect(paths: Paths, instance: DagsterInstance, runs: int = 20) -> dict[str, Any]:
    """Everything `medialens stats --json` prints."""
    from resources.store import MediaStore

    store = MediaStore(root=str(paths.store))
    keys = media_keys(instance, store)
    media = media_facts(store, keys)
    by_kind = dict.fromkeys(KINDS, 0)
    for facts in media.values():
        if facts["kind"] in by_kind:
            by_kind[facts["kind"]] += 1
    vectors, vectors_error = vector_counts(paths)
    out: dict[str, Any] = {
        "media": {
            "total": len(keys),
            "by_kind": by_kind,
            "not_ingested": len(keys) - len(media),
            "original_bytes": sum(f["size_bytes"] for f in media.values()),
        },
        "hours_analysed": round(sum(f["duration_s"] for f in media.values()) / 3600, 4),
        "store_bytes": tree_bytes(paths.store),
        "vectors": vectors,
        "assets": asset_totals(instance, media),
        "runs": run_throughput(instance, media, runs),
    }
    if vectors_error:
        out["vectors_error"] = vectors_error
    return out


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in cells]
    return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def render(stats: dict[str, Any]) -> str:
    """The human report: a header and three compact tables."""
    m = stats["media"]
    kinds = ", ".join(f"{n} {k}" for k, n in m["by_kind"].items())
    vectors = ", ".join(f"{c} {n}" for c, n in stats["vectors"].items()) or "none"
    if stats.get("vectors_error"):
        vectors = f"unavailable ({stats['vectors_error']})"
    lines = [
        f"media: {m['total']} ({kinds}"
        + (f", {m['not_ingested']} not ingested" if m["not_ingested"] else "")
        + f"), {stats['hours_analysed']:.2f} h analysed",
        f"store: {_size(stats['store_bytes'])}   vectors: {vectors}",
        "",
        "per asset (latest materialisation of each partition):",
        _table(
            [
                [
                    a["asset"],
                    a["partitions"],
                    a.get("total_s"),
                    a.get("mean_s"),
                    a.get("cpu_s"),
                    a.get("model_s"),
                    a.get("peak_rss_mib"),
                    a.get("media_s_per_s"),
                ]
                for a in stats["assets"]
            ],
            ["asset", "partitions", "total s", "mean s", "cpu s", "model s", "peak MiB", "media s/s"],
        ),
    ]
    r = stats["runs"]
    lines += [
        "",
        f"last {r['considered']} run(s): {r['partitions']} partition(s), {_fmt(r['wall_s'])} s, "
        f"{_fmt(r['media_s_per_s'], 2)} media s per s  "
        + " ".join(f"{k.lower()}={n}" for k, n in sorted(r["by_status"].items())),
    ]
    if r["assets"]:
        lines.append(
            _table(
                [[a["asset"], a["steps"], a["seconds"], a["partitions"], a["media_s_per_s"]] for a in r["assets"]],
                ["asset", "steps", "step s", "partitions", "media s/s"],
            )
        )
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    import warnings

    from media_assets.service.headless import dagster_instance

    warnings.filterwarnings("ignore")  # Dagster's preview warnings are for developers
    paths = Paths.from_env()
    instance = dagster_instance(paths)
    stats = collect(paths, instance, runs=args.runs)
    if args.json:
        print(json.dumps(stats, indent=2, ensure_ascii=False, default=str))
    else:
        print(render(stats))
    return 0


def register(sub: Any) -> None:
    """Add `stats` to the CLI's subcommands (media_assets/cli.py build_parser)."""
    p = sub.add_parser("stats", help="library size, hours analysed, per-asset cost and throughput, vectors")
    p.add_argument("--runs", type=int, default=20, metavar="N", help="throughput over the last N runs (default 20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
