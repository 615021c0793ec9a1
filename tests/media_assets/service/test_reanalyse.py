"""`medialens reanalyse` end to end: a settings change, a real backfill under a real dagster-daemon.

One module-scoped fixture does the slow part once (analyse six sample files, change the OCR
settings, `reanalyse --wait`); the tests then read what it left in the instance, store and Qdrant.
The summary LLM is switched off (`backend: none`) throughout: it is not what is tested and costs
minutes on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.event_api import AssetRecordsFilter
from dagster._core.storage.dagster_run import RunsFilter

from media_assets.plumbing.staleness import recorded_versions
from media_assets.service.reanalyse import GROUP_TAG, REPORT_TAG, contiguous_runs
from resources.qdrant import QdrantResource

MEDIALENS = Path(sys.executable).parent / "medialens"
FILES = ["talk.mp4", "clip.webm", "speech.mp3", "astronaut.png", "messi5.jpg", "basketball.png"]
BASE_CONFIG = "summary: {backend: none}\n"
OCR_CHANGE = "ocr_text: {det_limit_side_len: 640}\n"


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=900)


def materialisation_counts(instance: DagsterInstance, asset: str, partitions: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in partitions:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[p]), limit=1000
        )
        out[p] = len(result.records)
    return out


def text_points(home: Path, partitions: list[str]) -> dict[str, list[dict[str, Any]]]:
    qdrant = QdrantResource(path=str(home / "qdrant"))
    return {p: qdrant.scroll_payloads("text", must={"partition": p, "asset": "search_index"}) for p in partitions}


@pytest.fixture(scope="module")
def world(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("reanalyse")
    config = root / "medialens.yaml"
    config.write_text(BASE_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster_home"), MEDIALENS_CONFIG=str(config))
    w: dict[str, Any] = {"env": env, "home": root / "home", "dagster_home": root / "dagster_home"}

    p = ml(env, "analyse", *(str(samples[f]) for f in FILES), "--json")
    assert p.returncode == 0, p.stderr
    keys = [r["key"] for r in json.loads(p.stdout)["results"]]
    w["keys"] = keys
    w["stale_before_change"] = json.loads(ml(env, "stale", "--json").stdout)["stale"]

    os.environ["DAGSTER_HOME"] = str(w["dagster_home"])  # only for opening the instance below
    try:
        with DagsterInstance.get() as instance:
            w["keyframes_before"] = materialisation_counts(instance, "keyframes", keys)
            w["ocr_versions_before"] = recorded_versions(instance, AssetKey("ocr_text"))
    finally:
        del os.environ["DAGSTER_HOME"]
    w["points_before"] = text_points(w["home"], keys)

    config.write_text(BASE_CONFIG + OCR_CHANGE)
    w["stale"] = json.loads(ml(env, "stale", "--json").stdout)["stale"]
    w["unknown"] = ml(env, "reanalyse", "--asset", "no_such_asset", "--json")

    started = time.perf_counter()
    r = ml(env, "reanalyse", "--asset", "ocr_text", "--max-per-run", "3", "--wait", "--json")
    w["seconds"] = time.perf_counter() - started
    assert r.returncode == 0, r.stdout + r.stderr
    w["result"] = json.loads(r.stdout)
    w["stderr"] = r.stderr
    w["stale_after"] = json.loads(ml(env, "stale", "--json").stdout)["stale"]
    w["nothing"] = ml(env, "reanalyse", "--asset", "ocr_text", "--json")

    os.environ["DAGSTER_HOME"] = str(w["dagster_home"])
    try:
        with DagsterInstance.get() as instance:
            w["keyframes_after"] = materialisation_counts(instance, "keyframes", keys)
            w["ocr_versions_after"] = recorded_versions(instance, AssetKey("ocr_text"))
            w["index_versions"] = recorded_versions(instance, AssetKey("search_index"))
            group = w["result"]["report"]["id"]
            w["runs"] = instance.get_runs(RunsFilter(tags={GROUP_TAG: group}))
            w["backfills"] = [instance.get_backfill(b) for b in w["result"]["backfill_ids"]]
            w["order"] = list(instance.get_dynamic_partitions("media"))
    finally:
        del os.environ["DAGSTER_HOME"]
    w["points_after"] = text_points(w["home"], keys)
    return w


@pytest.mark.slow
def test_stale_lists_exactly_ocr_and_what_reads_it(world: dict[str, Any]) -> None:
    assert world["stale_before_change"] == []
    stale = world["stale"]
    by_asset: dict[str, set[str]] = {}
    for s in stale:
        by_asset.setdefault(s["asset"], set()).add(s["partition"])
    assert "ocr_text" in by_asset and "search_index" in by_asset
    assert all(parts == set(world["keys"]) for parts in by_asset.values())  # every partition
    assert not by_asset.keys() & {"media_file", "keyframes", "audio_track", "transcript", "tags", "faces"}
    assert all(s["reason"] == "analysed with another version" for s in stale if s["asset"] == "ocr_text")


@pytest.mark.slow
def test_reanalyse_runs_a_backfill_in_chunks(world: dict[str, Any]) -> None:
    result = world["result"]
    planned = {(p["asset"], p["partition"]) for p in result["planned"]}
    assert planned == {(s["asset"], s["partition"]) for s in world["stale"]}
    # 6 partitions, at most 3 per run: two backfills of one run each, all with the group tag
    assert len(result["backfill_ids"]) == 2 and result["runs"] == 2
    assert result["backfill_id"] == result["backfill_ids"][0] and result["status"] == "COMPLETED_SUCCESS"
    assert sorted(result["partitions"]) == sorted({p for _, p in planned})  # the contract's shape
    assert len(world["runs"]) == 2
    assert all(r.tags.get("dagster/backfill") in result["backfill_ids"] for r in world["runs"])
    for b in world["backfills"]:
        assert b is not None and b.status.value == "COMPLETED_SUCCESS"
        assert b.tags[REPORT_TAG] == result["report"]["path"]
    assert "started one" in world["stderr"]  # no daemon was running: the command started (and stopped) one
    print(f"reanalyse --wait took {world['seconds']:.1f} s")


@pytest.mark.slow
def test_upstream_is_not_rematerialised_and_nothing_is_left_stale(world: dict[str, Any]) -> None:
    assert world["keyframes_after"] == world["keyframes_before"]
    assert world["stale_after"] == []
    before, after = world["ocr_versions_before"], world["ocr_versions_after"]
    assert all(before[k] != after[k] for k in world["keys"])
    nothing = world["nothing"]
    assert nothing.returncode == 0
    assert json.loads(nothing.stdout) == {
        "backfill_id": None,
        "backfill_ids": [],
        "partitions": [],
        "runs": 0,
        "status": "nothing stale",
    }


@pytest.mark.slow
def test_search_points_are_replaced_not_duplicated(world: dict[str, Any]) -> None:
    before, after = world["points_before"], world["points_after"]
    assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
    assert sum(len(v) for v in after.values()) > 0
    for key, points in after.items():
        assert {p["model_version"] for p in points} <= {world["index_versions"][key]}


@pytest.mark.slow
def test_report(world: dict[str, Any]) -> None:
    report = world["result"]["report"]
    assert Path(report["path"]).exists()
    assert json.loads(Path(report["path"]).read_text())["id"] == report["id"]
    ocr = report["assets"]["ocr_text"]
    assert ocr["planned"] == ocr["redone"] == 6 and ocr["still_stale"] == 0
    ((pair, n),) = ocr["versions"].items()
    old, new = pair.split(" -> ")
    assert n == 6 and old != new
    assert "lines" in ocr["count_deltas"] and "lines_added" in ocr and "lines_removed" in ocr
    talk = next(k for k in world["keys"] if k.startswith("talk-"))
    assert set(ocr["partitions"][talk]) >= {"redone", "version", "counts", "lines_added", "lines_removed"}


@pytest.mark.slow
def test_unknown_asset_is_a_clear_error(world: dict[str, Any]) -> None:
    p = world["unknown"]
    assert p.returncode == 2 and "no_such_asset" in p.stderr and "ocr_text" in p.stderr


def test_contiguous_runs() -> None:
    order = ["a", "b", "c", "d", "e", "f"]
    assert contiguous_runs(["a", "b", "c"], order, 3) == 1
    assert contiguous_runs(["a", "c", "d"], order, 3) == 2
    assert contiguous_runs(order, order, 4) == 2


def test_report_compares_transcripts_by_word_error_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transcript redone with another model: the report says how much its words changed."""
    import pyarrow as pa

    from media_assets.service import reanalyse as ra
    from resources.store import MediaStore

    store = MediaStore(root=str(tmp_path / "store"))

    def analysed(version: str, text: str) -> None:
        table = store.write_table("transcript", version, "talk-1", pa.table({"text": text.split(". ")}))
        store.write_manifest("transcript", "talk-1", {"version": version, "table": str(table), "segments": 2})

    plan = ra.Plan([ra.PlannedPartition("transcript", "talk-1", "analysed with another version")], ["talk-1"])

    class Instance:
        storage_id = 1

        def get_latest_storage_id_by_partition(self, *_a: Any) -> dict[str, int]:
            return {"talk-1": self.storage_id}

    inst = Instance()
    analysed("1-old", "the crane at pier four is offline. use pier two")
    before = ra.snapshot(inst, store, plan)  # type: ignore[arg-type]
    analysed("1-new", "the crane at beer four is offline. use pier two")
    inst.storage_id = 2
    monkeypatch.setattr(ra, "find_stale", lambda *_a: [])
    monkeypatch.setattr(ra, "backfill_runs", lambda *_a: [])
    report = ra.build_report(inst, None, store, plan, before, "g", ["b1"])  # type: ignore[arg-type]
    detail = report["assets"]["transcript"]["partitions"]["talk-1"]
    assert detail["redone"] and detail["version"] == ["1-old", "1-new"]
    assert detail["wer_vs_previous"] == pytest.approx(1 / 10)  # one word of ten changed
    assert report["assets"]["transcript"]["mean_wer_vs_previous"] == pytest.approx(0.1)
