"""A recorded worker is alive only while that very process runs: not a dead one, not a reused pid,
and a worker on another host is never judged from here."""

from __future__ import annotations

import os
import subprocess
import sys

from resources.workers import (
    HOST_TAG,
    PID_TAG,
    RUN_TAG,
    STARTED_TAG,
    Liveness,
    Worker,
    hostname,
    pid_alive_since,
    process_start,
    this_worker,
)


def test_this_process_is_alive_and_round_trips_through_run_tags() -> None:
    me = this_worker()
    assert me.pid == os.getpid() and me.host == hostname()
    assert me.liveness() is Liveness.ALIVE
    tags = me.tags("run-1")
    assert tags[RUN_TAG] == "run-1" and tags[PID_TAG] == str(os.getpid())
    back = Worker.from_tags(tags, "run-1")
    assert back is not None and back.liveness() is Liveness.ALIVE
    assert "python" in me.command_line() or "pytest" in me.command_line()
    assert Worker.from_json(me.as_json()) == me


def test_tags_copied_into_another_run_or_damaged_are_not_a_worker() -> None:
    tags = this_worker().tags("parent-run")
    assert Worker.from_tags(tags, "its-retry") is None  # Dagster copies tags into retries
    assert Worker.from_tags({**tags, PID_TAG: "x"}, "parent-run") is None
    assert Worker.from_tags({HOST_TAG: "h", RUN_TAG: "r"}, "r") is None
    assert Worker.from_json({"host": "h"}) is None


def test_a_process_that_ended_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start(child.pid)
        assert started is not None
        worker = Worker(hostname(), child.pid, started)
        assert worker.liveness() is Liveness.ALIVE
        assert pid_alive_since(child.pid, started + 1)
        assert not pid_alive_since(child.pid, started - 60)  # a pid logged before it started: reused
    finally:
        child.kill()
        child.wait()
    assert worker.liveness() is Liveness.GONE
    assert worker.command_line() == ""
    assert not pid_alive_since(child.pid, started + 1)


def test_a_reused_pid_is_not_the_recorded_worker() -> None:
    me = this_worker()
    earlier = Worker(me.host, me.pid, me.started - 3600)  # same pid, a process of an hour ago
    assert earlier.liveness() is Liveness.GONE


def test_a_worker_on_another_host_is_not_judged_here() -> None:
    me = this_worker()
    assert Worker("some-other-host", me.pid, me.started).liveness() is Liveness.ELSEWHERE
    assert STARTED_TAG in me.tags("r")
