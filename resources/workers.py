"""Which process is doing something, and whether it still exists.

A run, a scratch folder or a lock is only as trustworthy as the process behind it: a run whose
worker was SIGKILLed stays STARTED forever in Dagster's storage, a scratch folder of a dead process
is an orphan, a lock held by a hung process must be named to be dealt with. Every such record
carries a `Worker` (host, pid, process start time); the start time tells a reused pid from the
process that wrote the record.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

import psutil

HOST_TAG = "medialens/worker_host"
PID_TAG = "medialens/worker_pid"
STARTED_TAG = "medialens/worker_started"
# The run the worker tags were written for: Dagster copies a run's tags into its retries and
# re-executions, and a copy describes the parent's worker, not theirs.
RUN_TAG = "medialens/worker_run"

# Process start times come from /proc in clock ticks (1/100 s) and are rounded when recorded.
START_TOLERANCE_S = 1.0


class Liveness(Enum):
    """What can be said about a recorded worker from this host."""

    ALIVE = "alive"
    GONE = "gone"
    ELSEWHERE = "elsewhere"  # another host: its pids mean nothing here


def hostname() -> str:
    """This machine's name as recorded in tags and lock files (a container's is its id)."""
    return socket.gethostname()


def process_start(pid: int) -> float | None:
    """The process's start time (epoch seconds), or None when there is no such process."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ValueError):
        return None


@dataclass(frozen=True)
class Worker:
    """A process, identified across pid reuse: (host, pid, start time)."""

    host: str
    pid: int
    started: float

    def tags(self, run_id: str) -> dict[str, str]:
        """As the Dagster run tags of run `run_id` (strings)."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), STARTED_TAG: f"{self.started:.2f}", RUN_TAG: run_id}

    @classmethod
    def from_tags(cls, tags: Any, run_id: str) -> Worker | None:
        """The worker recorded in the tags of run `run_id`; None when it has none of its own (none
        at all, damaged, or copied from the run it retries)."""
        if tags.get(RUN_TAG) != run_id:
            return None
        try:
            return cls(str(tags[HOST_TAG]), int(tags[PID_TAG]), float(tags[STARTED_TAG]))
        except (KeyError, TypeError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, obj: Any) -> Worker | None:
        try:
            return cls(str(obj["host"]), int(obj["pid"]), float(obj["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}"

    def liveness(self) -> Liveness:
        """ALIVE while that very process runs (not merely a process with the same pid)."""
        if self.host != hostname():
            return Liveness.ELSEWHERE
        started = process_start(self.pid)
        if started is None or abs(started - self.started) > START_TOLERANCE_S:
            return Liveness.GONE
        return Liveness.ALIVE

    def command_line(self) -> str:
        """What the process runs (for messages about a holder); empty when unknown."""
        if self.liveness() is not Liveness.ALIVE:
            return ""
        try:
            return " ".join(psutil.Process(self.pid).cmdline())[:200]
        except (psutil.Error, OSError):
            return ""


@cache
def _this(pid: int) -> Worker:
    started = process_start(pid)
    return Worker(hostname(), pid, started if started is not None else 0.0)


def this_worker() -> Worker:
    """This process (computed once per pid, so a forked child gets its own)."""
    return _this(os.getpid())


def pid_alive_since(pid: int, not_after: float) -> bool:
    """Whether process `pid` exists on this host and started no later than `not_after` (epoch
    seconds): the check for a pid Dagster logged without a start time (a reused pid started later)."""
    started = process_start(pid)
    return started is not None and started <= not_after + START_TOLERANCE_S


__all__ = [
    "HOST_TAG",
    "PID_TAG",
    "RUN_TAG",
    "STARTED_TAG",
    "Liveness",
    "Worker",
    "hostname",
    "pid_alive_since",
    "process_start",
    "this_worker",
]
