"""Ingest speed, measured side by side in one run (ratios, never timed assertions).

1. Keyframe extraction vs the bare PyAV decode loop on the same video: how much the shot detection
   and keyframe writing add to a pure decode.
2. The whole `analyse_media` job in-process through Dagster vs calling the analysis functions
   directly: the orchestration overhead per file.

Usage: .venv/bin/python bench/ingest.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av


def make_video(path: Path, seconds: int) -> None:
    """A 720p H.264 + AAC video whose picture changes every 5 s (shot changes to detect)."""
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1280x720:rate=25:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=300:duration={seconds}",
            "-vf",
            "hue=H=2*PI*floor(t/5)/7",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )


def bare_decode(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n


def timed(fn, *a, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        os.environ.update(MEDIALENS_HOME=str(tmp / "home"), DAGSTER_HOME=str(tmp / "dagster"))
        video = tmp / "bench.mp4"
        make_video(video, args.seconds)

        from media_assets.analysis.audio import extract_audio
        from media_assets.analysis.inspect import Limits, inspect_media
        from media_assets.analysis.keyframes import KeyframeParams, extract_video_keyframes

        t_bare, n_frames = timed(bare_decode, video)
        t_kf, frames = timed(extract_video_keyframes, video, tmp / "kf", KeyframeParams(), float(args.seconds))
        print(f"video: {args.seconds} s 720p, {n_frames} frames")
        print(f"bare PyAV decode       {t_bare:6.2f} s  ({n_frames / t_bare:6.0f} fps)")
        print(f"keyframes (decode+pick) {t_kf:6.2f} s  ({n_frames / t_kf:6.0f} fps, {len(frames)} keyframes)")
        print(f"ratio keyframes / bare decode: {t_kf / t_bare:.2f}x")

        def direct() -> None:
            info = inspect_media(video, Limits())
            extract_video_keyframes(video, tmp / "kf2", KeyframeParams(), info.duration_s)
            extract_audio(video, tmp / "a.wav", declared_duration_s=info.duration_s)

        t_direct, _ = timed(direct)
        from media_assets.cli import main as cli_main

        second = tmp / "bench2.mp4"
        make_video(second, args.seconds + 1)  # other bytes: a new partition, analysed again
        t_cold, rc = timed(cli_main, ["analyse", str(video), "--json"])
        t_warm, rc2 = timed(cli_main, ["analyse", str(second), "--json"])
        print(f"direct functions            {t_direct:6.2f} s")
        print(f"dagster job, first file     {t_cold:6.2f} s  (loads the code location; exit {rc})")
        print(f"dagster job, next file      {t_warm:6.2f} s  (exit {rc2})")
        ratio = t_warm / t_direct
        print(f"ratio dagster / direct (next file): {ratio:.2f}x  (overhead {t_warm - t_direct:.2f} s/file)")


if __name__ == "__main__":
    sys.exit(main())
