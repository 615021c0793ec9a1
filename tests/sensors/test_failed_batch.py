"""failed_batch_sensor: a range run with one bad file, then the runs it requests for the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
)

from media_assets.assets.jobs import ANALYSE_JOB_NAME, analyse_media_job
from media_assets.plumbing.staleness import missing_by_partition
from resources.store import MediaStore
from sensors.failed_batch import SPLIT_FROM_TAG, failed_batch_sensor, rerun_requests
from tests.media_assets.test_graph import register_file

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def definitions(resources: dict[str, Any]) -> Definitions:
    from media_assets.definitions import defs

    return Definitions(
        assets=list(defs.assets or []),
        jobs=[analyse_media_job],
        sensors=[failed_batch_sensor],
        resources=resources,
    )


def evaluate(defs: Definitions, instance: DagsterInstance, run_id: str) -> list[RunRequest] | SkipReason:
    """One evaluation of the sensor for a finished failed run, as the daemon would make it."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    failure = next(
        e.dagster_event
        for e in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        if e.dagster_event is not None
    )
    context = build_run_status_sensor_context(
        sensor_name="failed_batch_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    ).for_run_failure()
    result = failed_batch_sensor(context)
    assert isinstance(result, list | SkipReason)
    return result


def test_the_other_files_of_a_failed_range_run_go_on_without_the_bad_one(
    samples: dict[str, Path],
    bad_inputs: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
) -> None:
    store: MediaStore = resources["store"]
    good1 = register_file(samples["astronaut.png"], store, instance)
    good2 = register_file(samples["chelsea.webp"], store, instance)
    bad = register_file(bad_inputs["truncated_mkv"], store, instance)  # admitted, fails in keyframes
    good3 = register_file(samples["messi5.jpg"], store, instance)
    defs = definitions(resources)
    job = defs.resolve_job_def(ANALYSE_JOB_NAME)
    first = job.execute_in_process(
        instance=instance,
        tags={RANGE_START: good1, RANGE_END: good3, "medialens/files": "4"},
        raise_on_error=False,
    )
    assert not first.success

    requests = evaluate(defs, instance, first.run_id)
    assert isinstance(requests, list)
    # the bad file sits between: the others go on as the range before it and the file after it
    ranges = [(r.tags.get(RANGE_START), r.tags.get(RANGE_END), r.partition_key) for r in requests]
    assert ranges == [(good1, good2, None), (None, None, good3)]
    behind_keyframes = {"keyframes", "ocr_text", "poses", "faces", "safety", "tags", "summary", "search_index"}
    for r in requests:
        assert {k.to_user_string() for k in r.asset_selection or []} == behind_keyframes
        assert r.tags[SPLIT_FROM_TAG] == first.run_id and r.run_key and first.run_id in r.run_key

    for r in requests:  # what the daemon would launch
        again = job.execute_in_process(
            instance=instance,
            partition_key=r.partition_key,
            tags=r.tags,
            asset_selection=r.asset_selection,
            raise_on_error=False,
        )
        assert again.success
    still = missing_by_partition(instance, defs, [good1, good2, bad, good3])
    assert set(still) == {bad}  # every good file is fully analysed; the bad one keeps its failure
    assert "keyframes" in still[bad]
    assert store.read_manifest("tags", good2) is not None and store.read_manifest("faces", good1) is not None


def test_runs_it_leaves_alone(samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]) -> None:
    store: MediaStore = resources["store"]
    keys = [register_file(samples[n], store, instance) for n in ("astronaut.png", "chelsea.webp")]
    defs = definitions(resources)
    job = defs.resolve_job_def(ANALYSE_JOB_NAME)

    def failing(tags: dict[str, str], **kw: Any) -> str:
        # a selection that cannot succeed: keyframes without their media_file
        run = job.execute_in_process(
            instance=instance, tags=tags, asset_selection=[AssetKey("keyframes")], raise_on_error=False, **kw
        )
        assert not run.success
        return run.run_id

    cli = failing({RANGE_START: keys[0], RANGE_END: keys[1], "medialens/launched_by": "cli"})
    assert "CLI" in str(evaluate(defs, instance, cli))
    single = failing({}, partition_key=keys[0])
    assert "one media" in str(evaluate(defs, instance, single))
    backfill = failing({RANGE_START: keys[0], RANGE_END: keys[1], "dagster/backfill": "abc"})
    assert "backfill" in str(evaluate(defs, instance, backfill))


def test_a_failure_naming_no_file_retries_each_alone() -> None:
    order = ["a", "b", "c", "d"]
    todo = {"a": {"keyframes", "ocr_text"}, "b": {"keyframes", "ocr_text"}, "c": {"ocr_text"}}
    runs = rerun_requests("run1", ["a", "b", "c", "d"], {}, todo, order)
    assert sorted(r.partition_key for r in runs if r.partition_key) == ["a", "b", "c"]  # d lacks nothing
    assert all(RANGE_START not in r.tags for r in runs)
    # named failures: the rest in contiguous ranges, grouped by what they lack
    runs = rerun_requests("run1", order, {"b": "keyframes: corrupt"}, {**todo, "d": {"ocr_text"}}, order)
    shapes = sorted(
        (tuple(sorted(k.to_user_string() for k in r.asset_selection or [])), r.tags.get(RANGE_START), r.partition_key)
        for r in runs
    )
    assert shapes == [(("keyframes", "ocr_text"), None, "a"), (("ocr_text",), "c", None)]
    # a failure naming partitions outside the run is not trusted: each file alone
    runs = rerun_requests("run1", ["a", "b"], {"z": "?"}, todo, order)
    assert sorted(r.partition_key for r in runs if r.partition_key) == ["a", "b"]
