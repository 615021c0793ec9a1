"""The batching sqlite storage writes what Dagster's stock sqlite storage writes, in fewer commits."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DagsterEventType,
    DagsterInstance,
    EventRecordsFilter,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    materialize,
)
from dagster._core.definitions.data_version import extract_data_version_from_entry
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from media_assets.plumbing import event_storage
from media_assets.plumbing.config import Paths
from media_assets.plumbing.event_storage import (
    EVENT_BATCH_SIZE_ENV,
    BatchingSqliteEventLogStorage,
    BatchingSqliteStorage,
)
from media_assets.service.headless import EARLIER_INSTANCE_YAML, dagster_instance, instance_yaml

PARTS = StaticPartitionsDefinition(["a", "b", "c", "d"])
RANGE = {"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"}


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), code_version="1")
def upstream(context: AssetExecutionContext) -> MaterializeResult:
    return MaterializeResult(metadata={"partitions": len(context.partition_keys)})


@asset(partitions_def=PARTS, backfill_policy=BackfillPolicy.single_run(), deps=[upstream], code_version="2")
def downstream(context: AssetExecutionContext) -> None:
    context.log.info(f"{len(context.partition_keys)} partitions")


KEYS = (AssetKey("upstream"), AssetKey("downstream"))


@contextmanager
def open_instance(home: Path, batching: bool) -> Iterator[DagsterInstance]:
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home) if batching else "telemetry:\n  enabled: false\n")
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        yield instance


def what_was_stored(instance: DagsterInstance) -> dict[str, Any]:
    """Everything a reader of the event log sees, minus ids and timestamps."""
    (run,) = instance.get_run_records()
    out: dict[str, Any] = {
        "run_log": [
            (e.dagster_event_type, e.step_key, e.dagster_event.partition if e.dagster_event else None)
            for e in instance.all_logs(run.dagster_run.run_id)
        ],
    }
    for key in KEYS:
        name = key.to_user_string()
        out[f"{name} materialized"] = sorted(instance.get_materialized_partitions(key))
        out[f"{name} by partition"] = sorted(
            instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION)
        )
        records = instance.fetch_materializations(key, limit=100).records
        out[f"{name} materializations"] = sorted(
            (
                r.partition_key,
                r.run_id == run.dagster_run.run_id,
                tuple(sorted((r.asset_materialization.tags or {}).items())) if r.asset_materialization else (),
            )
            for r in records
        )
        planned = instance.get_event_records(
            EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, asset_key=key)
        )
        out[f"{name} planned"] = sorted(r.partition_key or "" for r in planned)
        (entry,) = instance.get_asset_records([key])
        last = entry.asset_entry.last_materialization
        out[f"{name} entry"] = (
            entry.asset_entry.last_run_id == run.dagster_run.run_id,
            last.dagster_event.partition if last and last.dagster_event else None,
        )
        versions = {r.partition_key: extract_data_version_from_entry(r.event_log_entry) for r in records}
        out[f"{name} data versions"] = sorted((p, v.value) for p, v in versions.items() if p and v)
    return out


def test_same_rows_as_dagsters_sqlite_storage_in_fewer_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    commits: list[str] = []
    original = SqliteEventLogStorage._connect

    @contextmanager
    def counted(self: SqliteEventLogStorage, shard: str) -> Iterator[Any]:
        commits.append(shard)
        with original(self, shard) as conn:
            yield conn

    monkeypatch.setattr(SqliteEventLogStorage, "_connect", counted)
    stored = {}
    connects = {}
    for batching in (False, True):
        with open_instance(tmp_path / f"batching-{batching}", batching) as instance:
            if batching:
                assert isinstance(instance.get_ref().storage, BatchingSqliteStorage)
                assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
            commits.clear()
            result = materialize([upstream, downstream], instance=instance, tags=RANGE)
            assert result.success
            connects[batching] = len(commits)
            stored[batching] = what_was_stored(instance)
    assert stored[True] == stored[False]
    assert stored[True]["upstream materialized"] == ["a", "b", "c"]
    assert stored[True]["downstream planned"] == ["a", "b", "c"]
    # The storage turned Dagster's batching on: 12 asset events (3 partitions x 2 assets x planned
    # and materialized) cost 2 connects (run shard, index) per batch instead of 2 each.
    assert os.environ[EVENT_BATCH_SIZE_ENV] == str(event_storage.EVENT_BATCH_SIZE)
    assert connects[False] - connects[True] >= 12, connects


def test_a_failing_index_write_falls_back_to_one_event_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    original = BatchingSqliteEventLogStorage._mirror_in_index

    def flaky(self: BatchingSqliteEventLogStorage, events: list[Any]) -> None:
        if len(events) > 1:
            raise RuntimeError("index shard busy")
        original(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "_mirror_in_index", flaky)
    with open_instance(tmp_path / "reference", batching=False) as instance:
        assert materialize([upstream, downstream], instance=instance, tags=RANGE).success
        reference = what_was_stored(instance)
    with open_instance(tmp_path / "flaky", batching=True) as instance:
        assert materialize([upstream, downstream], instance=instance, tags=RANGE).success
        assert what_was_stored(instance) == reference  # nothing lost, nothing stored twice


def test_the_cli_gives_new_and_earlier_homes_the_batching_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_env({"MEDIALENS_HOME": str(tmp_path / "home")})
    fresh, earlier, edited = tmp_path / "fresh", tmp_path / "earlier", tmp_path / "edited"
    for home, text in ((earlier, EARLIER_INSTANCE_YAML), (edited, EARLIER_INSTANCE_YAML + "# the user's\n")):
        home.mkdir()
        (home / "dagster.yaml").write_text(text)
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(earlier))) as instance:
        assert materialize([upstream], instance=instance, tags=RANGE).success  # on the stock storage
    for home, batching in ((fresh, True), (earlier, True), (edited, False)):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dagster_instance(paths) as instance:
            assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage) is batching, home
            if home == earlier:  # same folders: what the stock storage wrote is still there
                assert sorted(instance.get_materialized_partitions(AssetKey("upstream"))) == ["a", "b", "c"]
    assert (edited / "dagster.yaml").read_text().endswith("# the user's\n")


def test_a_failure_part_way_through_a_batch_writes_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_instance(tmp_path / "source", batching=False) as source:
        assert materialize([upstream, downstream], instance=source, tags=RANGE).success
        (run,) = source.get_run_records()
        run_id = run.dagster_run.run_id
        entries = source.all_logs(run_id)
    planned = [e for e in entries if e.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
    step_start = next(e for e in entries if e.dagster_event_type == DagsterEventType.STEP_START)
    storage = BatchingSqliteEventLogStorage(str(tmp_path / "target"))
    original = BatchingSqliteEventLogStorage.store_event
    failed: list[EventLogEntry] = []

    def once_busy(self: BatchingSqliteEventLogStorage, event: EventLogEntry) -> None:
        if event is step_start and not failed:
            failed.append(event)
            raise RuntimeError("database is locked")
        original(self, event)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "store_event", once_busy)
    storage.store_event_batch([*planned, step_start, *planned[:2]])  # no exception: all was written
    assert failed
    kinds = [e.dagster_event_type for e in storage.get_logs_for_run(run_id)]
    assert (
        kinds
        == [DagsterEventType.ASSET_MATERIALIZATION_PLANNED] * len(planned)
        + [DagsterEventType.STEP_START]
        + [DagsterEventType.ASSET_MATERIALIZATION_PLANNED] * 2
    )
    storage.dispose()
