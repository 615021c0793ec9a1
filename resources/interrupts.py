"""Hold Ctrl-C and SIGTERM for the few moments a write must not be cut in half.

Dagster raises an interrupt inside asset code the moment SIGINT/SIGTERM arrives. That is what makes
a run stop within seconds, but an interrupt in the middle of a partition's Qdrant writes (upserts,
then the delete of stale points) would leave a half-replaced partition visible to search. Wrap such
a short, bounded section in `deferred_interrupts()`: a signal that arrives inside is delivered when
it ends. Never wrap anything that can wait long (a lock, a model), or Ctrl-C stops working.

The same holds for interrupts another thread raises into this one (`interrupt_thread`: how a run
guard stops a run that waits for a pool slot, where no signal handler runs): they wait at the gate
until the section ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Held by a thread inside a deferred section; `interrupt_thread` takes it before raising into a
# thread, so an injected interrupt never lands inside one.
_gate = threading.RLock()


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Delay SIGINT/SIGTERM until the block ends, then deliver the first one to the handler that
    was in place (only the main thread receives signals); interrupts raised into this thread by
    `interrupt_thread` wait too."""
    with _gate:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        with _held_signals():
            yield


@contextmanager
def _held_signals() -> Iterator[None]:
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            _deliver(received[0], previous[received[0]])


def _deliver(signum: int, handler: Any) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action (terminate), now that it is safe
    # SIG_IGN or None: the signal was being ignored before; keep ignoring it


def interrupt_thread(thread_id: int, exc: type[BaseException], wait_s: float = 30.0) -> bool:
    """Raise `exc` in another thread of this process at its next Python instruction (a thread busy
    in C code, e.g. a model, gets it when that call returns). Waits up to `wait_s` for the thread to
    leave a deferred section; returns whether the interrupt was set."""
    acquired = _gate.acquire(timeout=wait_s)
    try:
        done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))
        return bool(done == 1)
    finally:
        if acquired:
            _gate.release()
