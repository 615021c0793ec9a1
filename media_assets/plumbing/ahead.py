"""Work started ahead of the step that needs it, in a background thread of the run's process.

Why: with the in-process executor a run's steps execute one after another, so on two cores the
audio branch (whisper, ~a fifth of a talk's run) waited for the vision branch or the other way
round. CTranslate2 and ONNX Runtime release the GIL, so a single background thread lets speech run
beside the keyframe models: `audio_track` hands each partition's transcription to `Ahead` the
moment its WAV is written, and the `transcript` step later `take`s the finished result, in the
same process and run (Dagster's order and lineage are unchanged: `transcript` still materialises
after `audio_track`, from the same inputs). A job the step never takes costs time, never a wrong
result: the step takes only a job of its own run, partition and input, and computes anything else
itself. The thread is a daemon: a killed or interrupted run stops with its process, and nothing
the thread computes is stored by it (the step writes the table).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


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
        """The work's progress callback (kept, so the step can replay every report in order)."""
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

    def submit(
        self, run_id: str, key: Hashable, fingerprint: Hashable, work: Callable[[Callable[[float], None]], Any]
    ) -> None:
        """Queue `work(progress)` for partition `key` of run `run_id`. Jobs of other runs that no
        step took are dropped (their run ended or failed before taking them)."""
        job = Job(run_id, key, fingerprint, work)
        with self._lock:
            for stale_key, stale in list(self._jobs.items()):
                if stale.run_id != run_id:
                    stale.cancelled = True
                    del self._jobs[stale_key]
            self._jobs[key] = job
            if self._thread is None or not self._thread.is_alive():
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

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job.cancelled:
                job.done.set()
                continue
            started = time.perf_counter()
            try:
                job.result = job.work(job.report)
            except BaseException as exc:  # handed to the step that takes the job
                job.error = exc
            finally:
                job.seconds = time.perf_counter() - started
                job.done.set()
