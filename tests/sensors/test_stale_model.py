"""`stale_model_sensor` ticks against a real instance whose materialisations carry code versions.

The materialisations are reported as runless events with the `dagster/code_version` tag a run
would give them (what `find_stale` reads), so the chunking logic is tested without running models;
tests/media_assets/service/test_reanalyse.py covers the real runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from dagster import AssetKey, AssetMaterialization, AssetSelection, DagsterInstance, SensorResult, build_sensor_context

import sensors.stale_model as sm
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.staleness import CODE_VERSION_TAG

PARTS = [f"p{i}-0000000000" for i in range(6)]


@pytest.fixture(scope="module")
def defs() -> Any:
    from media_assets.definitions import defs

    return defs


def materialise(instance: DagsterInstance, defs: Any, partitions: list[str], old: set[str]) -> None:
    """Every per-media asset of these partitions materialised; the `old` ones with an older version."""
    graph = defs.resolve_asset_graph()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if node.partitions_def is None or not node.is_materializable:
            continue
        version = "0-old" if key.to_user_string() in old else (node.code_version or "")
        for p in partitions:
            instance.report_runless_asset_event(
                AssetMaterialization(key, partition=p, tags={CODE_VERSION_TAG: version})
            )


def tick(instance: DagsterInstance, defs: Any, cursor: str | None) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def()) as ctx:
        result = sm.stale_model_sensor(ctx)
    assert isinstance(result, SensorResult)
    return result


def ranges(result: SensorResult) -> list[tuple[str, str]]:
    """(first, last) of each requested run; a single partition is a plain partition run."""
    out = []
    for r in result.run_requests or []:
        span = r.partition_key_range
        out.append((span.start, span.end) if span else (r.partition_key, r.partition_key))
    return out


def test_definitions_register_it_stopped(defs: Any) -> None:
    sensor = defs.resolve_sensor_def("stale_model_sensor")
    assert sensor.default_status.value == "STOPPED"
    assert sensor.job_name == "analyse_media"


def test_stale_partitions_are_requested_in_bounded_chunks(
    instance: DagsterInstance, defs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sm, "MAX_PARTITIONS_PER_RUN", 2)
    monkeypatch.setattr(sm, "MAX_RUNS_PER_TICK", 2)
    instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, PARTS)
    materialise(instance, defs, PARTS[:5], old={"ocr_text"})  # PARTS[5]: never analysed (upload sensor's)
    # p2 analysed again with the current OCR version: a gap that a range run must not cover
    materialise(instance, defs, [PARTS[2]], old=set())

    first = tick(instance, defs, None)
    assert ranges(first) == [(PARTS[0], PARTS[1]), (PARTS[3], PARTS[4])]
    graph = defs.resolve_asset_graph()
    fed_by_ocr = {
        k for k in AssetSelection.assets("ocr_text").downstream().resolve(graph) if graph.get(k).partitions_def
    }
    assert AssetKey("search_index") in fed_by_ocr and AssetKey("keyframes") not in fed_by_ocr
    for r in first.run_requests or []:
        # only OCR and what it feeds, never keyframes or the other analyses of the same frames
        assert set(r.asset_selection or []) == fed_by_ocr
    assert first.cursor is not None
    cursor = json.loads(first.cursor)
    assert len(cursor["requested"]) == 4 * len(fed_by_ocr)

    # the same versions: what was requested is not requested again, however stale it still looks
    second = tick(instance, defs, first.cursor)
    assert not second.run_requests and second.skip_reason

    # new versions after the next deploy (here: a cursor from other versions): start over
    other = json.dumps({"versions": "something-else", "requested": cursor["requested"]})
    third = tick(instance, defs, other)
    assert ranges(third) == [(PARTS[0], PARTS[1]), (PARTS[3], PARTS[4])]


def test_more_than_a_tick_is_left_for_later_ticks(
    instance: DagsterInstance, defs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sm, "MAX_PARTITIONS_PER_RUN", 2)
    monkeypatch.setattr(sm, "MAX_RUNS_PER_TICK", 1)
    instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, PARTS[:5])
    materialise(instance, defs, PARTS[:5], old={"ocr_text"})
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(5):
        result = tick(instance, defs, cursor)
        assert len(result.run_requests or []) <= 1
        seen += ranges(result)
        cursor = result.cursor
    assert seen == [(PARTS[0], PARTS[1]), (PARTS[2], PARTS[3]), (PARTS[4], PARTS[4])]


def test_nothing_stale_skips(instance: DagsterInstance, defs: Any) -> None:
    instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, PARTS[:2])
    materialise(instance, defs, PARTS[:2], old=set())
    result = tick(instance, defs, None)
    assert not result.run_requests and result.skip_reason
