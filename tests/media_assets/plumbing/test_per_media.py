"""The per-partition loop's run log: throttled chatter, failures always, one summary line."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import Failure, build_asset_context

import media_assets.plumbing.per_media as per_media
from media_assets.plumbing.per_media import StepLog, for_each_partition


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))

    def exception(self, msg: str) -> None:
        self.lines.append(("exception", msg))


def test_step_log_keeps_one_info_line_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(per_media.time, "monotonic", lambda: clock[0])
    rec = Recorder()
    log = StepLog(rec, every_s=2.0)
    for i in range(10):  # ten lines within one second: the first only
        log.info(f"line {i}")
        clock[0] += 0.1
    clock[0] += 2.0
    log.info("later")
    log.warning("a warning")
    log.error("an error")
    log.progress("decoded 10% of 3600 s")  # progress of long media is never dropped
    log.progress("decoded 20% of 3600 s")
    assert rec.lines == [
        ("info", "line 0"),
        ("info", "later"),
        ("warning", "a warning"),
        ("error", "an error"),
        ("info", "decoded 10% of 3600 s"),
        ("info", "decoded 20% of 3600 s"),
    ]
    assert log.dropped == 9


def test_a_loop_over_many_partitions_logs_little_but_every_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"m-{i}" for i in range(30)]
    context: Any = build_asset_context()
    rec = Recorder()
    monkeypatch.setattr(type(context), "partition_keys", property(lambda self: keys))
    monkeypatch.setattr(type(context), "log", property(lambda self: rec))

    def work(key: str) -> dict[str, Any]:
        if key in ("m-7", "m-21"):
            raise ValueError(f"{key} is corrupt")
        return {"key": key}

    with pytest.raises(Failure) as failure:
        for_each_partition(context, work)
    infos = [m for level, m in rec.lines if level == "info"]
    errors = [m for level, m in rec.lines if level == "error"]
    assert len(infos) <= 3  # the first "done", maybe one more, and the summary, not 28 lines
    assert infos[-1].startswith("28 of 30 partitions done in") and "2 failed" in infos[-1]
    assert len(errors) == 2 and "m-7 is corrupt" in errors[0] and "m-21 is corrupt" in errors[1]
    assert set(failure.value.metadata["failed_partitions"].value) == {"m-7", "m-21"}  # type: ignore[union-attr]
