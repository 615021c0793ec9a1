"""Helpers for the browser tests of the results UI: a real `medialens ui` server on a free port, and
Debian's chromium driven by Playwright (`playwright install`, which downloads browsers, is never run).

The server is the installed CLI in a subprocess, exactly as a person starts it, against a home the
tests analysed; the browser is `/usr/bin/chromium` (`.ci/apt-deps.sh` installs it), headless.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.media_assets.test_cli import MEDIALENS, ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; the tests never use Playwright's own browsers
SCREENS = ROOT / ".tmp" / "ui-screens"  # full-page screenshots for a person to look at
VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_S = 120.0  # `medialens ui` imports Streamlit and the app's modules: slow on a busy 2-core CI machine


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it), for one UI server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = STARTUP_S) -> None:
    """Return once Streamlit answers `ok` on `/_stcore/health`; fail with the server's log when it exits
    first or does not come up within `timeout` (a port taken, an import error in the app)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(
                f"medialens ui exited with {proc.returncode} before answering; its log {log}:\n"
                + log.read_text(errors="replace")[-4000:]
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"medialens ui did not answer on {base} within {timeout:.0f} s; its log {log}:\n"
                + log.read_text(errors="replace")[-4000:]
            )
        time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM to `medialens ui` (it passes it on to its Streamlit child); the whole process group,
    which this module started, only when it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group is the server's own
            proc.wait(timeout=timeout)


@contextmanager
def ui_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """`medialens ui --port P` on a free port with `env` (an analysed home): its base URL while the
    block runs; its output goes to `log` (shown when it fails to start)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MEDIALENS), "ui", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(base, proc, log)
        yield base
    finally:
        stop(proc)


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium through Playwright, headless; `--no-sandbox` as root (CI containers), where
    Chromium refuses to start with its sandbox (Playwright's default launch drops the sandbox too, and
    adds `--disable-dev-shm-usage` for containers' small /dev/shm: said here so it holds either way)."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)


def wait_rendered(page: Any, timeout_ms: int = 180_000) -> None:
    """Wait until the app's script run has finished (after `goto`; the first search loads the text
    embedder, hence the generous default) and fail on a Streamlit exception box."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, f"{page.url}: {errors.first.inner_text()}"


def video_position(page: Any, expected: float, tolerance: float = 1.0, timeout_ms: int = 60_000) -> float:
    """The `<video>`'s `currentTime` once it rests at `expected` (± `tolerance`) without playing, with the
    frame there decoded (readyState >= 2, so a screenshot shows that moment); when it never gets there,
    where it is at the end of `timeout_ms`, for the caller's assertion."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector("video", state="attached", timeout=timeout_ms)
    with suppress(PlaywrightTimeout):  # never got there: the caller's assertion shows where it is instead
        page.wait_for_function(
            """([t, tol]) => { const v = document.querySelector('video');
                return v && v.readyState >= 2 && !v.seeking && v.paused && Math.abs(v.currentTime - t) <= tol }""",
            arg=[expected, tolerance],
            timeout=timeout_ms,
        )
    return float(page.eval_on_selector("video", "v => v.currentTime"))


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot at `.tmp/ui-screens/NAME.png` (repository root), for a person to look at.

    Streamlit scrolls inside its main block, not the document, so Playwright's `full_page` alone stops
    at the window: the viewport grows to the content's height for the shot, then is put back."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    size = page.viewport_size or VIEWPORT
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight ?? 0")
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 10_000)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path
