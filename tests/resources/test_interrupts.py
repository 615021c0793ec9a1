"""A Ctrl-C or an interrupt raised into a thread waits for a deferred section to end, then arrives;
the fault hook kills at the named arrival."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from resources.interrupts import deferred_interrupts, interrupt_thread


class Stop(BaseException):
    pass


def test_sigint_inside_a_deferred_section_arrives_when_it_ends() -> None:
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
            done.append("finished")  # the section is not cut short
        done.append("after")  # never reached: the interrupt arrives as the section ends
    assert done == ["finished"]
    # the previous handler is back: a second Ctrl-C is an ordinary KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_sigterm_with_the_default_action_terminates_after_the_section() -> None:
    code = (
        "import signal, sys, time\n"
        "from resources.interrupts import deferred_interrupts\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "with deferred_interrupts():\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    print('section done', flush=True)\n"
        "print('not reached', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert proc.returncode == -signal.SIGTERM
    assert proc.stdout == "section done\n"


def _spin(started: threading.Event, out: list[str], deferred_s: float = 0.0) -> None:
    started.set()
    try:
        if deferred_s:
            with deferred_interrupts():
                end = time.monotonic() + deferred_s
                while time.monotonic() < end:
                    pass
                out.append("section done")
        while True:
            time.sleep(0.01)
    except Stop:
        out.append("stopped")


def test_an_interrupt_raised_into_a_busy_thread_stops_it() -> None:
    started, out = threading.Event(), []
    worker = threading.Thread(target=_spin, args=(started, out))
    worker.start()
    started.wait()
    assert worker.ident is not None
    assert interrupt_thread(worker.ident, Stop)
    worker.join(timeout=10)
    assert not worker.is_alive() and out == ["stopped"]


def test_an_interrupt_raised_into_a_thread_waits_for_its_deferred_section() -> None:
    started, out = threading.Event(), []
    worker = threading.Thread(target=_spin, args=(started, out, 0.5))
    worker.start()
    started.wait()
    time.sleep(0.1)  # inside the section now
    assert worker.ident is not None
    assert interrupt_thread(worker.ident, Stop)
    worker.join(timeout=10)
    assert out == ["section done", "stopped"]


@pytest.mark.parametrize(("spec", "rc"), [("demo:point@2", -signal.SIGKILL), ("demo:point:sigint@2", 130)])
def test_the_fault_hook_fires_at_the_named_arrival(spec: str, rc: int) -> None:
    code = (
        "import sys\n"
        "from resources.faults import fault_point\n"
        "try:\n"
        "    for i in range(3):\n"
        "        print(i, flush=True)\n"
        "        fault_point('other:point')\n"
        "        fault_point('demo:point')\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    env = {**os.environ, "MEDIALENS_FAULT": spec}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == rc
    assert proc.stdout.split() == ["0", "1"]  # killed at the second arrival, not before
