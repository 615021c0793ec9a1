"""Dagster's local sqlite storage, with asset events written in batches.

A range run of N files writes about 20 asset events per file (one `ASSET_MATERIALIZATION_PLANNED`
and one `ASSET_MATERIALIZATION` per partition and asset). Dagster's stock sqlite event log stores
each one alone: a new engine, a commit in the run's shard and another in the index shard, 8-25 ms
an event on this project's 2-core machines. That made the event log most of what a 20-file run
spent outside the models (bench/vision.py, bench/event_log.py). Dagster already hands these events
over in batches (`DAGSTER_EVENT_BATCH_SIZE`, `EventLogStorage.store_event_batch`), but the OSS
sqlite storage then writes them one by one; this storage writes each batch in one transaction per
shard. What lands in the tables is the same rows the stock storage writes
(tests/media_assets/plumbing/test_event_storage.py compares them).

Configured in dagster.yaml as a custom `storage` (dagster_home/dagster.yaml, headless.py); the
Postgres deployment keeps Dagster's own storage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dagster._core.events import ASSET_EVENTS, BATCH_WRITABLE_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData

from resources.faults import fault_point

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


def _writable_together(events: Sequence[EventLogEntry], start: int) -> list[EventLogEntry]:
    """The events from `start` on that one commit can hold: batchable, of the same run."""
    group: list[EventLogEntry] = []
    for event in events[start:]:
        if not _batched(event) or (group and event.run_id != group[0].run_id):
            break
        group.append(event)
    return group


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose `store_event_batch` commits once per shard per batch."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        stored = 0  # events[:stored] are written (the order is kept)
        try:
            while stored < len(events):
                group = _writable_together(events, stored)
                if len(group) > 1:
                    self._store_together(group)
                else:  # other events, and a lone asset event, are stored as the stock storage does
                    self.store_event(events[stored])
                stored += max(1, len(group))
        except Exception:
            if stored == 0:
                raise  # nothing written: Dagster falls back to storing them one by one
            for event in events[stored:]:  # Dagster's fallback would write events[:stored] twice
                self.store_event(event)

    def _store_together(self, events: list[EventLogEntry]) -> None:
        """Asset events of one run: one commit in its shard, one in the index."""
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(self.prepare_insert_event_batch(events))
        fault_point("events:index")
        try:
            self._mirror_in_index(events)
        except Exception:
            for event in events:  # in the run's shard already: mirror them one at a time
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
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, str]
    ) -> BatchingSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
