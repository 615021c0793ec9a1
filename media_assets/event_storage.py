"""Dagster's local sqlite storage, with asset events written in batches.

A range run of N files writes about 20 asset events per file (one `ASSET_MATERIALIZATION_PLANNED`
and one `ASSET_MATERIALIZATION` per partition and asset). Dagster's stock sqlite event log stores
each one alone: a new engine, a commit in the run's shard and another in the index shard, about
25 ms an event here, which made the event log most of what a 20-file run spends outside the models
(bench/vision.py). Dagster already hands these events over in batches (`DAGSTER_EVENT_BATCH_SIZE`,
`EventLogStorage.store_event_batch`), but the OSS sqlite storage then writes them one by one; this
storage writes each batch in one transaction per shard. What lands in the tables is the same rows
the stock storage writes (tests/media_assets/test_event_storage.py compares them).

Configured in dagster.yaml as a custom `storage` (dagster_home/dagster.yaml, headless.py); the
Postgres deployment keeps Dagster's own storage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import groupby

from dagster._core.events import ASSET_EVENTS, BATCH_WRITABLE_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData

# Dagster reads this per event; 0 (its default) turns batching off. A batch ends at the end of a
# step's outputs or of a run's planned events, so the size only bounds memory for huge runs.
EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 1000


def _batched(event: EventLogEntry) -> bool:
    """Asset events the stock storage mirrors into the index shard with no further bookkeeping."""
    return (
        event.is_dagster_event
        and event.dagster_event_type in ASSET_EVENTS
        and event.dagster_event_type in BATCH_WRITABLE_EVENTS
        and event.get_dagster_event().asset_key is not None
    )


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose `store_event_batch` commits once per shard per batch."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        pending: list[EventLogEntry] = []
        for event in events:  # order is kept: other events are stored alone, between the batches
            if _batched(event):
                pending.append(event)
                continue
            self._store_together(pending)
            pending = []
            self.store_event(event)
        self._store_together(pending)

    def _store_together(self, events: list[EventLogEntry]) -> None:
        for run_id, group in groupby(events, key=lambda e: e.run_id):
            run_events = list(group)
            if len(run_events) == 1:
                self.store_event(run_events[0])
                continue
            # The run's shard first: if this fails nothing is written and Dagster falls back to
            # storing the events one by one.
            with self.run_connection(run_id) as conn:
                conn.execute(self.prepare_insert_event_batch(run_events))
            try:
                self._mirror_in_index(run_events)
            except Exception:
                # Dagster's fallback would store them in the run's shard a second time.
                for event in run_events:
                    self._mirror_in_index([event])

    def _mirror_in_index(self, events: list[EventLogEntry]) -> None:
        """The index shard's rows for asset events, as `SqliteEventLogStorage.store_event` writes
        them, in one transaction."""
        with self.index_transaction() as conn:
            event_ids: list[int] = []
            for event in events:
                with db_result(conn, self.prepare_insert_event(event)) as result:
                    event_ids.append(int(result.inserted_primary_key[0]))
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in zip(events, event_ids, strict=True):
                self._store_asset_event(conn, event, event_id)


class BatchingSqliteStorage(DagsterSqliteStorage):
    """Dagster's sqlite storage (same folders, same schema) with the batching event log; turns on
    Dagster's event batching for the processes that use it (run workers inherit it)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # DagsterSqliteStorage.__init__ builds the stock event log; build the same three storages
        # here instead, the event log being ours.
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        DagsterStorage.__init__(self)  # type: ignore[arg-type]  # a generic base mypy cannot bind
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, str]
    ) -> BatchingSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
