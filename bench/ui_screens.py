"""Screenshots of the results UI in a real Chromium: the end-to-end check AppTest cannot make
(the browser really renders the hits, loads the keyframes and starts the video at the linked second).

Not a test: Playwright is not a medialens dependency. It runs with a Python that has it and drives
`.venv/bin/medialens ui` on a home holding the analysed talk.mp4 and speech.mp3 (generated and
analysed on the first run, with the test suite's settings; later runs reuse them).

Usage: /tmp/pw/bin/python bench/ui_screens.py [--out .tmp/ui-screens] [--chromium /usr/bin/chromium]
Writes OUT/search.png (`/?q=crane%20offline`) and OUT/media.png (`/?media=KEY&t=12`), and prints
where the video's playback position was when the screenshot was taken.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
MEDIALENS = ROOT / ".venv" / "bin" / "medialens"


def analysed_home(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of a home with talk.mp4 and speech.mp3 analysed, and their keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(out / "home"), DAGSTER_HOME=str(out / "dagster_home"))
    (out / "home").mkdir(parents=True, exist_ok=True)
    (out / "dagster_home").mkdir(exist_ok=True)
    shutil.copy(ROOT / "tests" / "medialens-test.yaml", out / "home" / "medialens.yaml")  # extractive summaries
    samples = out / "samples"
    if not (samples / "speech.mp3").exists():
        subprocess.run([str(MEDIALENS), "samples", str(samples)], env=env, check=True, stdout=subprocess.DEVNULL)
    files = [str(samples / "talk.mp4"), str(samples / "speech.mp3")]
    p = subprocess.run([str(MEDIALENS), "analyse", *files, "--json"], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"analyse failed:\n{p.stderr}")
    return env, {r["source_name"]: r["key"] for r in json.loads(p.stdout)["results"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("medialens ui did not come up")
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".tmp" / "ui-screens")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    env, keys = analysed_home(out)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen([str(MEDIALENS), "ui", "--port", str(port)], env=env)
    try:
        wait_healthy(base, ui)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?q=crane%20offline")
            # the first search loads the text embedder: allow for a slow machine
            page.get_by_role("button", name="Open at").first.wait_for(timeout=180_000)
            page.locator("[data-testid='stImage'] img").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # the remaining thumbnails
            page.screenshot(path=str(out / "search.png"), full_page=True)
            print(f"search: {out / 'search.png'}")

            page.goto(f"{base}/?media={keys['talk.mp4']}&t=12")
            page.wait_for_function(
                "() => { const v = document.querySelector('video'); return v && v.readyState >= 1 }",
                timeout=120_000,
            )
            page.wait_for_timeout(1000)
            position = page.evaluate("() => document.querySelector('video').currentTime")
            page.screenshot(path=str(out / "media.png"), full_page=True)
            print(f"media: {out / 'media.png'}  (video at {position:.1f} s)")
            browser.close()
        if abs(position - 12) > 0.5:
            print(f"the video did not start at 12 s but at {position:.1f} s", file=sys.stderr)
            return 1
        return 0
    finally:
        ui.terminate()
        ui.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
