"""Work started ahead of the step that needs it, in a background thread of the run's process.

Why: with the in-process executor a run's steps execute one after another, so on two cores the
audio branch (whisper, ~a fifth of a talk's run) waited for the vision branch or the other way
round. CTranslate2 and ONNX Runtime release the GIL, so a single background thread lets speech run
beside the keyframe models: `audio_track` hands each partition's transcription to `Ahead` the
moment its WAV is written, and the `transcript` step later `take`s the finished result, in the
same process and run (Dagster's order and lineage are unchanged: `transcript` still materialises
after `audio_track`, from the same inputs). A job the step never takes costs time, never a wrong
result: the step takes only a job of its own run, partition and input, and computes anything else
itself. Nothing the thread computes is stored by it (the step writes the table), so a killed run
loses nothing. On a normal exit (a run interrupted with Ctrl-C included) the running job is
stopped at its next progress report and the thread joined before the interpreter is torn down:
CTranslate2 aborts the process ("terminate called without an active exception") when its objects
are finalised while a thread is inside it.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

STOP_WAIT_S = 60.0  # at exit, how long to wait for the running job to reach its next progress report


class Cancelled(Exception):
    """Raised inside a job's work, from its progress callback, when the process is exiting."""


@dataclass
class Job:
    """One unit of work: its result or error once done, and how far it got (0..1) meanwhile."""

    run_id: str
    key: Hashable
    fingerprint: Hashable  # what the work was computed from: the step takes it only if that matches
    work: Callable[[Callable[[float], None]], Any]
    reports: list[float] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    seconds: float = 0.0

    def report(self, fraction: float) -> None:
        """The work's progress callback (kept, so the step can replay every report in order); stops
        the work when the job was cancelled."""
        if self.cancelled:
            raise Cancelled(f"{self.key}: cancelled")
        self.reports.append(fraction)

    @property
    def progress(self) -> float:
        return self.reports[-1] if self.reports else 0.0

    def wait(self, on_progress: Callable[[float], None] | None = None, poll_s: float = 0.5) -> Any:
        """The result (or the work's exception, raised here). Each progress report the work made
        reaches `on_progress` in order, while waiting and once done, as if the step had run it."""
        seen = 0
        while True:
            finished = self.done.wait(poll_s)
            if on_progress is not None:
                reports = self.reports[seen:]
                seen += len(reports)
                for fraction in reports:
                    on_progress(fraction)
            if finished:
                break
        if self.error is not None:
            raise self.error
        return self.result


class Ahead:
    """One background worker thread and the jobs of the current run, by partition key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: dict[Hashable, Job] = {}
        self._queue: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running: Job | None = None
        self._stopping = False

    def submit(
        self, run_id: str, key: Hashable, fingerprint: Hashable, work: Callable[[Callable[[float], None]], Any]
    ) -> None:
        """Queue `work(progress)` for partition `key` of run `run_id`. Jobs of other runs that no
        step took are dropped (their run ended or failed before taking them)."""
        job = Job(run_id, key, fingerprint, work)
        with self._lock:
            if self._stopping:  # exiting: the step computes it itself if it still runs
                return
            for stale_key, stale in list(self._jobs.items()):
                if stale.run_id != run_id:
                    stale.cancelled = True
                    del self._jobs[stale_key]
            self._jobs[key] = job
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:
                    atexit.register(self.stop)
                self._thread = threading.Thread(target=self._work, name=f"ahead-{self.name}", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def take(self, run_id: str, key: Hashable, fingerprint: Hashable) -> Job | None:
        """The job started for this run, partition and input, if any (removed: taken once)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.run_id != run_id or job.fingerprint != fingerprint:
                return None
            del self._jobs[key]
            return job

    def pending(self) -> int:
        """Jobs submitted and not taken (for tests and logs)."""
        with self._lock:
            return len(self._jobs)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Cancel every job and wait for the thread to leave the work it is in (called at exit)."""
        with self._lock:
            self._stopping = True
            for job in [*self._jobs.values(), *([self._running] if self._running else [])]:
                job.cancelled = True
            self._jobs.clear()
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(Job("", None, None, lambda progress: None, cancelled=True))  # wakes an idle thread
            thread.join(wait_s)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job.cancelled or self._stopping:
                job.cancelled = True
                job.done.set()
                if self._stopping:
                    return
                continue
            with self._lock:
                self._running = job
            started = time.perf_counter()
            try:
                job.result = job.work(job.report)
            except BaseException as exc:  # handed to the step that takes the job
                job.error = exc
            finally:
                job.seconds = time.perf_counter() - started
                with self._lock:
                    self._running = None
                job.done.set()
            if self._stopping:
                return
