"""Per-partition resource metadata and the asset checks, on one real run over two media files.

One run (module fixture) analyses talk.mp4 and astronaut.png together, as an upload batch does,
through the whole per-media graph and its checks; the tests then read what it recorded, and break
the results in ways the checks must catch.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    FloatMetadataValue,
    build_asset_context,
    define_asset_job,
    instance_for_test,
)
from dagster._core.event_api import AssetRecordsFilter
from qdrant_client import models as qm

from media_assets.assets.checks import MEDIA_CHECKS
from media_assets.assets.jobs import ANALYSE_JOB_NAME, analyse_media_job
from media_assets.definitions import defs
from media_assets.plumbing.config import Paths
from media_assets.plumbing.per_media import Usage, record_usage
from media_assets.service.headless import storage_config
from resources import build_resources
from resources.store import MediaStore
from tests.media_assets.test_graph import register_file

ALL = [a for a in defs.assets or [] if a.partitions_def is not None]  # the per-media graph
MODEL_ASSETS = {"ocr_text", "poses", "faces", "safety", "tags", "transcript", "search_index", "summary"}


def test_usage_of_a_partition() -> None:
    started, cpu = time.perf_counter(), _process_cpu()
    sum(i * i for i in range(300_000))  # some CPU
    usage = Usage.measure(started, cpu, {"model_seconds": 0.25})
    assert usage.wall_s > 0 and usage.cpu_s > 0 and usage.model_s == 0.25
    assert usage.peak_rss_mib == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, abs=1)
    md = usage.as_metadata()
    assert set(md) == {"wall_s", "cpu_s", "peak_rss_mib", "model_s"}
    assert all(isinstance(v, FloatMetadataValue) for v in md.values())  # numbers: the UI plots them
    assert "model_s" not in Usage.measure(started, cpu, {"seconds": 1.0}).as_metadata()  # no model, no model_s
    record_usage(build_asset_context(), "k", usage)  # a directly built context: nothing to record into


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """One analysis run over talk.mp4 and astronaut.png (a partition range), checks included."""
    root = tmp_path_factory.mktemp("monitoring")
    paths = Paths.from_env({"MEDIALENS_HOME": str(root / "home")})
    paths.inbox.mkdir(parents=True)
    resources = build_resources(paths, env={})
    (root / "dagster").mkdir()
    with instance_for_test(
        temp_dir=str(root / "dagster"), overrides={"storage": storage_config(root / "dagster")}
    ) as inst:
        keys = [register_file(samples[n], resources["store"], inst) for n in ("talk.mp4", "astronaut.png")]
        job = Definitions(
            assets=ALL, asset_checks=MEDIA_CHECKS, jobs=[analyse_media_job], resources=resources
        ).resolve_job_def(ANALYSE_JOB_NAME)
        cpu_before = _process_cpu()
        result = job.execute_in_process(
            instance=inst,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
            raise_on_error=False,
        )
        cpu_used = _process_cpu() - cpu_before
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        yield {"instance": inst, "resources": resources, "keys": keys, "result": result, "cpu_used": cpu_used}


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _metadata(instance: DagsterInstance, asset: str, key: str) -> dict[str, Any]:
    """The metadata of that partition's latest materialisation."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]), limit=1, ascending=False
    ).records
    assert records and records[0].asset_materialization is not None, (asset, key)
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.mark.slow
def test_every_partition_records_what_it_cost(world: dict[str, Any]) -> None:
    instance, keys = world["instance"], world["keys"]
    total_cpu = 0.0
    for asset in (a.key.to_user_string() for a in ALL):
        peaks = []
        for key in keys:  # the step works through the range in this order
            md = _metadata(instance, asset, key)
            for field in ("wall_s", "cpu_s", "peak_rss_mib"):
                assert isinstance(md[field], float), (asset, key, field, md.get(field))
            assert md["wall_s"] >= 0 and md["cpu_s"] >= 0
            assert 50 < md["peak_rss_mib"] < 64 * 1024, (asset, md["peak_rss_mib"])
            assert "process-wide" in md["resource_usage"]
            manifest = world["resources"]["store"].read_manifest(asset, key) or {}
            if asset in MODEL_ASSETS and "model_s" in md and not manifest.get("in_background"):
                assert isinstance(md["model_s"], float) and md["model_s"] <= md["wall_s"] + 0.05, (asset, md)
            if asset in ("media_file", "keyframes", "audio_track"):
                assert "model_s" not in md  # no model: not pretended
            peaks.append(md["peak_rss_mib"])
            total_cpu += md["cpu_s"]
        assert peaks == sorted(peaks), (asset, peaks)  # the process's peak so far: never falls
    # per partition, not one number copied to every partition of the run
    talk, photo = (_metadata(instance, "ocr_text", k) for k in keys)
    assert talk["wall_s"] != photo["wall_s"] and talk["model_s"] > photo["model_s"]
    transcript = _metadata(instance, "transcript", keys[0])
    # made in the background thread beside the vision steps: the model's time is the thread's, its
    # CPU is in the cpu_s of the steps it ran beside
    assert world["resources"]["store"].read_manifest("transcript", keys[0])["in_background"]
    assert transcript["model_s"] > 0.1, transcript
    # the partitions' CPU adds up to no more than the process spent on the run
    assert 1.0 < total_cpu <= world["cpu_used"] + 0.5, (total_cpu, world["cpu_used"])


@pytest.mark.slow
def test_checks_ran_in_the_analysis_run_and_passed(world: dict[str, Any]) -> None:
    evaluations = world["result"].get_asset_check_evaluations()
    by_name = {e.check_name: e for e in evaluations}
    assert set(by_name) == {
        "video_has_keyframes",
        "audible_speech_is_transcribed",
        "vectors_match_index",
        "faces_have_embeddings",
    }
    for name, e in by_name.items():
        assert e.passed, (name, e.description)
        assert e.metadata["partitions_checked"].value == 2, name


def _run_checks(world: dict[str, Any]) -> dict[str, Any]:
    """The checks alone (as from the UI): they look at every materialised partition."""
    job = define_asset_job("checks_only", selection=AssetSelection.all_asset_checks())
    d = Definitions(assets=ALL, asset_checks=MEDIA_CHECKS, jobs=[job], resources=world["resources"])
    result = d.resolve_job_def("checks_only").execute_in_process(instance=world["instance"], raise_on_error=False)
    assert result.success  # failed checks never fail a run
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _drop_one_point(world: dict[str, Any], collection: str, key: str) -> None:
    with world["resources"]["qdrant"].client() as c:
        flt = qm.Filter(must=[qm.FieldCondition(key="partition", match=qm.MatchValue(value=key))])
        records, _ = c.scroll(collection, scroll_filter=flt, limit=1)
        assert records, (collection, key)
        c.delete(collection, points_selector=qm.PointIdsList(points=[records[0].id]), wait=True)


@pytest.mark.slow
def test_checks_catch_broken_results(world: dict[str, Any]) -> None:
    store: MediaStore = world["resources"]["store"]
    talk, photo = world["keys"]
    assert all(e.passed for e in _run_checks(world).values())  # on their own, on good media: pass

    # a video whose keyframe index was emptied, a talk whose transcript lost its words, a text
    # point and a face vector gone from Qdrant
    frames = store.read_manifest("keyframes", talk)
    transcript = store.read_manifest("transcript", talk)
    assert frames is not None and transcript is not None
    for path in (frames["table"], transcript["table"]):
        pq.write_table(pq.read_table(path).slice(0, 0), path)
    index = store.read_manifest("search_index", talk)
    faces = store.read_manifest("faces", photo)
    assert index is not None and index["points"] >= 2 and faces is not None and faces["faces"] >= 1
    _drop_one_point(world, "text", talk)
    _drop_one_point(world, "faces", photo)

    checks = _run_checks(world)
    kf = checks["video_has_keyframes"]
    assert not kf.passed and kf.severity == AssetCheckSeverity.ERROR
    assert talk in kf.description and "0 keyframes" in kf.description and photo not in kf.description

    speech = checks["audible_speech_is_transcribed"]
    assert not speech.passed and speech.severity == AssetCheckSeverity.WARN
    assert talk in speech.description and "dBFS" in speech.description and "0 words" in speech.description

    vectors = checks["vectors_match_index"]
    assert not vectors.passed and vectors.severity == AssetCheckSeverity.ERROR
    expected = f"{index['points'] - 1} points in Qdrant collection 'text', but the index wrote {index['points']}"
    assert talk in vectors.description and expected in vectors.description, vectors.description
    assert vectors.metadata["failed"].value == {talk: vectors.metadata["failed"].value[talk]}

    face = checks["faces_have_embeddings"]
    assert not face.passed and face.severity == AssetCheckSeverity.ERROR
    assert photo in face.description
    assert f"{faces['faces']} faces in the table but {faces['faces'] - 1} vectors" in face.description
