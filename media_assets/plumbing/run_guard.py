"""Every analysis run records where it runs, never waits for a pool silently or forever, and stops
cleanly on Ctrl-C or SIGTERM.

Wrapped around Dagster's executors (`guarded`, used by ops_gpu/executors.py), so the same rules hold
for the CLI's runs and the daemon's:
- the run records its worker (host, pid, start time) in its tags, for media_assets/plumbing/dead_runs.py;
- a watcher thread looks at the pools while the run has a step waiting for a slot: it ends runs
  whose worker is gone (freeing their slots), logs "waiting for the gpu pool, held by run X
  (STARTED since ...)" and gives up after `MEDIALENS_POOL_WAIT_S` with that message;
- Ctrl-C/SIGTERM: inside asset code Dagster raises the interrupt at once; between steps, and while
  a step waits for a slot (Dagster 1.13 only records the signal there, and spins), the watcher
  raises it into the run's thread. The run is marked CANCELING first, so Dagster ends it CANCELED,
  not failed, and its slots are given back.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from dagster import DagsterInstance
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._utils import interrupts as dagster_interrupts
from dagster._utils.interrupts import check_captured_interrupt

from media_assets.plumbing.dead_runs import end_dead_runs, pool_holders, waiting_pools
from resources.interrupts import interrupt_thread
from resources.workers import Worker, this_worker

POOL_WAIT_ENV = "MEDIALENS_POOL_WAIT_S"
DEFAULT_POOL_WAIT_S = 3600.0
POLL_S = 0.5  # how often the watcher looks for a recorded interrupt
POOL_CHECK_S = 5.0  # how often it looks at the pools (a query each)
QUIET_WAIT_S = 5.0  # a slot freed within this is not worth a message
REPORT_EVERY_S = 30.0

log = logging.getLogger("medialens")


MAX_CLAIM_SLEEP_S = 1.0  # a waiting run's loop sleeps at most this long: interrupts land within it


def _sleep_until_next_claim_check(self: InstanceConcurrencyContext) -> float:
    """How long a run waiting for a pool slot may sleep before its next claim attempt.

    Dagster 1.13 returns `min([0, *waits])`, never positive, so a waiting run spins at 100 % CPU
    (what the crash report saw). Here: until the earliest retry Dagster scheduled (its own backoff,
    1-15 s), capped so that an interrupt raised into the loop is taken within a second."""
    if not self.has_pending_claims():
        return 0.0
    timeouts = getattr(self, "_pending_timeouts", {})
    if not timeouts:
        return 0.0
    return max(0.0, min(MAX_CLAIM_SLEEP_S, min(timeouts.values()) - time.time()))


InstanceConcurrencyContext.interval_to_next_pending_claim_check = _sleep_until_next_claim_check  # type: ignore[method-assign]


# When this process last received SIGINT/SIGTERM (monotonic seconds; 0: never). Dagster's own
# record of a signal (`check_captured_interrupt`) exists only outside asset code and is cleared
# when it raises; an interrupt raised where it is swallowed (e.g. inside a finaliser that runs
# during garbage collection: "Exception ignored in ...") would be lost, and the run would go on.
# Every handler Dagster installs is wrapped to note the signal here, so the watcher can raise it
# again while the run has not started stopping.
_last_signal = [0.0]
REPEAT_INTERRUPT_S = 3.0


def _noting(handler: Any) -> Any:
    if not callable(handler) or getattr(handler, "_medialens_notes", False):
        return handler

    def note_then_handle(signum: int, frame: Any) -> Any:
        _last_signal[0] = time.monotonic()
        return handler(signum, frame)

    note_then_handle._medialens_notes = True  # type: ignore[attr-defined]
    return note_then_handle


def _note_signals() -> None:
    """Wrap the signal handlers in place now and every one Dagster installs from here on."""
    original = dagster_interrupts._replace_interrupt_signal
    if not getattr(original, "_medialens_notes", False):

        def replace(new_signal_handler: Any) -> None:
            original(_noting(new_signal_handler))

        replace._medialens_notes = True  # type: ignore[attr-defined]
        dagster_interrupts._replace_interrupt_signal = replace
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _noting(signal.getsignal(signum)))


class PoolWaitTimeout(Exception):
    """A run gave up waiting for a pool slot; the message names the holder."""


class _Stop(DagsterExecutionInterruptedError):
    """Raised into the run's thread by the watcher (Dagster treats it as an interruption)."""


def pool_wait_limit(env: dict[str, str] | None = None) -> float:
    """Seconds a run waits for a pool slot before it fails (MEDIALENS_POOL_WAIT_S, default 1 h)."""
    raw = (env if env is not None else os.environ).get(POOL_WAIT_ENV) or ""
    if not raw.strip():
        return DEFAULT_POOL_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{POOL_WAIT_ENV}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{POOL_WAIT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def record_worker(instance: DagsterInstance, run: DagsterRun) -> Worker:
    """Tag the run with this process (once; the CLI already tags the runs it launches)."""
    me = this_worker()
    if Worker.from_tags(run.tags, run.run_id) != me:
        instance.add_run_tags(run.run_id, me.tags(run.run_id))
    return me


class RunWatcher:
    """The thread that watches one run's pool waits and recorded interrupts (see module doc)."""

    def __init__(
        self,
        instance: DagsterInstance,
        run: DagsterRun,
        pools: list[str],
        report: Callable[[str], None],
        wait_limit_s: float,
        stop_on_interrupt: bool = True,
    ) -> None:
        self.instance, self.run, self.pools = instance, run, pools
        self.report, self.wait_limit_s = report, wait_limit_s
        self.stop_on_interrupt = stop_on_interrupt
        self.target = threading.get_ident()  # the run's thread: the one that builds the watcher
        self.timed_out: str | None = None
        self.interrupted = False
        self.stopping = False  # the interrupt reached the executor: Dagster is ending the run
        self._started = time.monotonic()
        self._last_stop = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"medialens-run-watcher-{run.run_id[:8]}", daemon=True)
        self._waiting_since: float | None = None
        self._last_report = 0.0

    def __enter__(self) -> RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_pool_check = time.monotonic() + 1.0
        while not self._done.wait(POLL_S):
            try:
                if self.stop_on_interrupt and not self.stopping:
                    self._stop_if_signalled()
                if self.pools and time.monotonic() >= next_pool_check:
                    next_pool_check = time.monotonic() + POOL_CHECK_S
                    self._check_pools()
            except Exception:  # the watcher must never take the run down with it
                log.exception("run watcher: unexpected error (the run goes on unwatched)")
                next_pool_check = time.monotonic() + 60

    def _stop_if_signalled(self) -> None:
        now = time.monotonic()
        if check_captured_interrupt() and not self.interrupted:
            self._stop("interrupted (SIGINT/SIGTERM)")
        elif _last_signal[0] > self._started and now - max(_last_signal[0], self._last_stop) >= REPEAT_INTERRUPT_S:
            self._stop("interrupted (SIGINT/SIGTERM) and still running")  # the first one was swallowed

    def _stop(self, why: str) -> None:
        if self._done.is_set() or self.stopping:
            return
        self.interrupted = True
        self._last_stop = time.monotonic()
        log.warning(f"run {self.run.run_id}: {why}: stopping it")
        interrupt_thread(self.target, _Stop)

    def _check_pools(self) -> None:
        waiting = waiting_pools(self.instance, self.run.run_id, self.pools)
        now = time.monotonic()
        if not waiting:
            self._waiting_since = None
            return
        if self._waiting_since is None:
            self._waiting_since = now
            return
        waited = now - self._waiting_since
        if waited < QUIET_WAIT_S:
            return
        if end_dead_runs(self.instance, self.report):
            return  # slots of dead runs are free again: Dagster's loop claims one on its next look
        pool = waiting[0]
        holders = pool_holders(self.instance, pool, exclude_run=self.run.run_id)
        held = ", ".join(h.describe() for h in holders) or "runs that have just released it"
        message = f"waiting for the {pool} pool, held by {held}; waited {waited:.0f} s of {self.wait_limit_s:.0f} s"
        if waited >= self.wait_limit_s:
            self.timed_out = (
                f"gave up after waiting {waited:.0f} s for the {pool} pool, held by {held} "
                f"({POOL_WAIT_ENV} sets the limit): if that run is stuck, terminate it in the Dagster UI"
            )
            self.report(self.timed_out)
            self._stop("gave up waiting for a pool slot")
            return
        if now - self._last_report >= REPORT_EVERY_S:
            self._last_report = now
            self.report(message)


def mark_canceling(instance: DagsterInstance, run: DagsterRun, why: str) -> None:
    """Ask Dagster to end the run CANCELED (it checks for CANCELING when execution stops)."""
    fresh = instance.get_run_by_id(run.run_id)
    if fresh is not None and fresh.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
        instance.report_run_canceling(fresh, message=f"Run canceled: {why}.")


def guarded(
    plan_context: PlanOrchestrationContext,
    events: Iterator[DagsterEvent],
    stop_on_interrupt: bool = True,
) -> Iterator[DagsterEvent]:
    """`events` (an executor's execution) with the run's worker recorded, its pool waits watched
    and interrupts ending it CANCELED (see the module docstring)."""
    instance, run = plan_context.instance, plan_context.dagster_run
    record_worker(instance, run)
    _note_signals()
    steps = plan_context.execution_plan.get_steps_to_execute_in_topo_order()
    pools = sorted({step.pool for step in steps if step.pool})

    def report(message: str) -> None:
        log.warning(message)
        try:
            instance.report_engine_event(message, run)
        except Exception:  # the event log may be what is failing; the log line is enough
            log.exception("could not record the message in the run's event log")

    watcher = RunWatcher(instance, run, pools, report, pool_wait_limit(), stop_on_interrupt)
    with watcher:
        try:
            yield from events
        except (KeyboardInterrupt, DagsterExecutionInterruptedError):
            watcher.stopping = True
            if watcher.timed_out:
                raise PoolWaitTimeout(watcher.timed_out) from None
            mark_canceling(instance, run, "interrupted (Ctrl-C or SIGTERM)")
            raise
        finally:
            # What a stopped run still holds goes back now, not after the daemon's grace period.
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


class GuardedExecutor(Executor):
    """Any Dagster executor, its execution wrapped by `guarded`."""

    def __init__(self, inner: Executor, stop_on_interrupt: bool = True) -> None:
        self.inner = inner
        self.stop_on_interrupt = stop_on_interrupt

    @property
    def retries(self) -> RetryMode:
        return self.inner.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self.inner.step_dependency_config

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        return guarded(plan_context, self.inner.execute(plan_context, execution_plan), self.stop_on_interrupt)

    def __getattr__(self, name: str) -> Any:  # e.g. the multiprocess executor's max_concurrent
        if name == "inner":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)
