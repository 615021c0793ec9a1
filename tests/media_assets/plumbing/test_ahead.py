"""Work started ahead in a background thread: taken once, by its own run, partition and input only;
errors reach the step that takes the job; jobs of an earlier run are dropped, never served."""

from __future__ import annotations

import threading
import time

import pytest

from media_assets.plumbing.ahead import Ahead


def test_a_job_is_taken_once_with_its_result_and_progress() -> None:
    ahead = Ahead("test")
    release = threading.Event()

    def work(progress):  # type: ignore[no-untyped-def]
        progress(0.25)
        progress(0.5)
        release.wait(5)
        return "text"

    ahead.submit("run-1", "a", ("a.wav", "v1"), work)
    job = ahead.take("run-1", "a", ("a.wav", "v1"))
    assert job is not None and ahead.take("run-1", "a", ("a.wav", "v1")) is None  # taken once
    seen: list[float] = []
    threading.Timer(0.3, release.set).start()
    assert job.wait(on_progress=seen.append, poll_s=0.05) == "text"
    assert seen == [0.25, 0.5] and job.progress == 0.5 and job.seconds > 0  # every report, in order


def test_only_the_same_run_and_input_take_a_job() -> None:
    ahead = Ahead("test")
    ahead.submit("run-1", "a", ("a.wav", "v1"), lambda progress: 1)
    assert ahead.take("run-2", "a", ("a.wav", "v1")) is None  # another run computes it itself
    assert ahead.take("run-1", "a", ("a.wav", "v2")) is None  # another model version: not this result
    assert ahead.take("run-1", "b", ("a.wav", "v1")) is None
    job = ahead.take("run-1", "a", ("a.wav", "v1"))
    assert job is not None and job.wait() == 1


def test_an_error_is_raised_in_the_step_that_takes_the_job() -> None:
    ahead = Ahead("test")

    def broken(progress):  # type: ignore[no-untyped-def]
        raise ValueError("transcript: audio contains NaN")

    ahead.submit("run-1", "a", "fp", broken)
    job = ahead.take("run-1", "a", "fp")
    assert job is not None
    with pytest.raises(ValueError, match="NaN"):
        job.wait()
    # the worker survives the error
    ahead.submit("run-1", "b", "fp", lambda progress: "ok")
    later = ahead.take("run-1", "b", "fp")
    assert later is not None and later.wait() == "ok"


def test_a_new_run_drops_the_jobs_an_earlier_run_never_took() -> None:
    ahead = Ahead("test")
    gate, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow(progress):  # type: ignore[no-untyped-def]
        started.set()
        gate.wait(5)
        ran.append("slow")

    def never(progress):  # type: ignore[no-untyped-def]
        ran.append("never")

    ahead.submit("run-1", "a", "fp", slow)
    ahead.submit("run-1", "b", "fp", never)  # queued behind a; run-1 ends without taking either
    assert started.wait(5)  # a is running: it finishes (nothing interrupts a model call), b never starts
    ahead.submit("run-2", "a", "fp", lambda progress: "fresh")
    assert ahead.pending() == 1
    gate.set()
    job = ahead.take("run-2", "a", "fp")
    assert job is not None and job.wait() == "fresh"
    time.sleep(0.1)
    assert ran == ["slow"]  # the queued job of run-1 was cancelled, not run


def test_stop_ends_the_running_job_at_its_next_report_and_the_thread() -> None:
    ahead = Ahead("test")
    reports = threading.Event()
    steps: list[int] = []

    def long(progress):  # type: ignore[no-untyped-def]
        for i in range(1000):  # like whisper: a progress report per segment
            steps.append(i)
            reports.set()
            time.sleep(0.01)
            progress(i / 1000)
        return "finished"

    ahead.submit("run-1", "a", "fp", long)
    ahead.submit("run-1", "b", "fp", lambda progress: "queued")
    job = ahead.take("run-1", "a", "fp")
    assert job is not None and reports.wait(5)
    ahead.stop(wait_s=5)
    assert job.done.is_set() and len(steps) < 1000
    assert ahead._thread is not None and not ahead._thread.is_alive()
    from media_assets.plumbing.ahead import Cancelled

    with pytest.raises(Cancelled):
        job.wait()
    ahead.submit("run-1", "c", "fp", lambda progress: "late")  # exiting: nothing starts any more
    assert ahead.take("run-1", "c", "fp") is None
