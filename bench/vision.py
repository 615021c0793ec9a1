"""Vision model speed, and how much of a Dagster run is spent outside the models (issue 3).

1. Per model, frames/s on the sample keyframes, called directly in batches.
2. `medialens analyse` of N files (default 20, distinct bytes) through the real asset graph:
   wall time vs the time the assets spent inside the models (their `model_seconds`), so the
   share outside the models is decode, keyframes, audio, Parquet, Qdrant and Dagster itself;
   per step, and the time outside any step.
3. The bare loop over the same files in the same process (FACTS.md's yardstick): keyframes and
   audio decoded, the five vision models and whisper run, no Dagster, no tables, no Qdrant. The
   Dagster overhead is 1 - bare / Dagster. Target: <= 25 % for a 20-file run (models warm: the
   first file loads them and is left out).

Usage: .venv/bin/python bench/vision.py [--files 20]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

MODEL_ASSETS = ("ocr_text", "poses", "faces", "safety", "tags")


def distinct_copies(samples: list[Path], n: int, out: Path) -> list[Path]:
    """n files with distinct bytes (new partitions): sample images re-encoded with a tiny change."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    images = [p for p in samples if p.suffix in (".png", ".jpg", ".webp")]
    videos = [p for p in samples if p.suffix in (".mp4", ".mkv", ".webm")]
    files: list[Path] = []
    for i in range(n):
        if i % 4 == 3 and videos:  # one in four a video: trailing bytes change the hash, not the stream
            src = videos[(i // 4) % len(videos)]
            dest = out / f"v{i:02d}{src.suffix}"
            dest.write_bytes(src.read_bytes() + b"\0" * (i + 1))
        else:
            src = images[i % len(images)]
            img = Image.open(src).convert("RGB")
            img.putpixel((0, 0), (i, i, i))
            dest = out / f"i{i:02d}.jpg"
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=92)
            dest.write_bytes(buf.getvalue())
        files.append(dest)
    return files


def model_speeds(keyframe_paths: list[Path]) -> None:
    import numpy as np
    from PIL import Image

    from media_assets.analysis import faces, ocr, poses, safety, tags

    images = [np.asarray(Image.open(p).convert("RGB")) for p in keyframe_paths]
    px = sum(i.shape[0] * i.shape[1] for i in images) / len(images)
    print(f"\n{len(images)} keyframes, mean {px / 1e6:.2f} MP")
    print(f"{'model':<34}{'frames/s':>10}{'ms/frame':>10}")
    for name, model, batch in (
        (ocr.MODEL_ID, ocr.OcrModel(ocr.OcrParams()), 4),
        (poses.MODEL_ID, poses.PoseModel(poses.PoseParams()), 8),
        (faces.MODEL_ID, faces.FaceModel(faces.FaceParams()), 4),
        (safety.MODEL_ID, safety.SafetyModel(safety.SafetyParams()), 16),
        (tags.MODEL_ID, tags.TagModel(tags.TagParams()), 16),
    ):
        model(images[:1])  # warm-up
        started = time.perf_counter()
        for s in range(0, len(images), batch):
            model(images[s : s + batch])
        dt = time.perf_counter() - started
        print(f"{name:<34}{len(images) / dt:10.1f}{1000 * dt / len(images):10.0f}")


def bare_loop(files: list[Path], out: Path) -> float:
    """The same files through the same analysis functions with no orchestration; returns seconds."""
    from media_assets.analysis import faces, ocr, poses, safety, tags
    from media_assets.analysis import transcript as speech
    from media_assets.analysis.audio import extract_audio
    from media_assets.analysis.inspect import Limits, inspect_media
    from media_assets.analysis.keyframes import KeyframeParams, extract_video_keyframes, image_keyframe
    from media_assets.config import current_settings
    from media_assets.on_keyframes import KeyframeRef, run_on_keyframes

    settings = current_settings()
    vision = [
        (ocr.OcrModel(ocr.OcrParams.from_params(settings.of("ocr_text"))), 4, True),
        (poses.PoseModel(poses.PoseParams.from_params(settings.of("poses"))), 8, False),
        (faces.FaceModel(faces.FaceParams.from_params(settings.of("faces"))), 4, False),
        (safety.SafetyModel(safety.SafetyParams.from_params(settings.of("safety"))), safety.MAX_BATCH, False),
        (tags.TagModel(tags.TagParams.from_params(settings.of("tags"))), 16, False),
    ]
    whisper = speech.TranscriptModel(speech.TranscriptParams.from_params(settings.of("transcript")))
    kf_params = KeyframeParams.from_params(settings.of("keyframes"))
    limits = Limits.from_params(settings.of("media_file"))
    started = time.perf_counter()
    for i, path in enumerate(files):
        info = inspect_media(path, limits)
        kf_dir = out / f"{i:02d}"
        if info.kind == "video":
            frames = extract_video_keyframes(path, kf_dir, kf_params, declared_duration_s=info.duration_s)
        elif info.kind == "image":
            frames = image_keyframe(path, kf_dir, kf_params)
        else:
            frames = []
        refs = [KeyframeRef(kf=f.idx, t=f.t, path=str(f.path), reason=f.reason, shot=f.shot) for f in frames]
        for model, batch, reuse in vision:
            run_on_keyframes(model, refs, batch_size=batch, reuse_unchanged=reuse)
        if info.kind != "image" and info.audio_codec:
            track = extract_audio(path, out / f"{i:02d}.wav", declared_duration_s=info.duration_s)
            if track is not None:
                whisper(speech.read_wav(track.path))
    return time.perf_counter() - started


def step_breakdown(since: float, wall: float, model_s: dict[str, float]) -> None:
    """Where the wall time went: per step of the command's runs, its time inside vs outside the
    models; then the time between steps (Dagster) and outside any run (admission, registration)."""
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
    epoch0 = time.time() - (time.perf_counter() - since)
    runs = [r.dagster_run for r in instance.get_run_records(limit=20) if r.create_timestamp.timestamp() >= epoch0 - 1]
    steps: dict[str, float] = {}
    run_wall = 0.0
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time and stats.end_time:
            run_wall += stats.end_time - stats.start_time
        for st in instance.get_run_step_stats(run.run_id):
            if st.start_time and st.end_time:
                steps[st.step_key] = steps.get(st.step_key, 0.0) + st.end_time - st.start_time
    print(f"  {len(runs)} run(s), {run_wall:.1f} s inside runs")
    print(f"  {'step':<16}{'wall s':>8}{'model s':>9}{'outside s':>10}")
    for step, dt in sorted(steps.items(), key=lambda kv: -kv[1]):
        m = model_s.get(step, 0.0)
        print(f"  {step:<16}{dt:8.1f}{m:9.1f}{dt - m:10.1f}")
    print(f"  {'between steps':<16}{run_wall - sum(steps.values()):8.1f}")
    print(f"  {'outside runs':<16}{wall - run_wall:8.1f}   (admission: hashing, probing, registration)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        os.environ.update(MEDIALENS_HOME=str(tmp / "home"), DAGSTER_HOME=str(tmp / "dagster"))
        from media_assets.cli import main as cli_main
        from media_assets.samples import generate_samples
        from resources.store import MediaStore

        samples = generate_samples(tmp / "samples")
        files = distinct_copies(samples, args.files + 1, tmp / "copies")
        store = MediaStore(root=str(tmp / "home" / "store"))

        manifests = tmp / "home" / "store" / "manifests" / "media_file"
        cli_main(["analyse", str(files[0]), "--json"])  # loads the code location and every model
        warm_up = {p.stem for p in manifests.glob("*.json")}
        started = time.perf_counter()
        rc = cli_main(["analyse", *map(str, files[1:]), "--json"])
        wall = time.perf_counter() - started

        model_s = {a: 0.0 for a in (*MODEL_ASSETS, "transcript", "summary", "search_index")}
        keyframe_paths: list[Path] = []
        for key in sorted({p.stem for p in manifests.glob("*.json")} - warm_up):
            for asset in model_s:
                m = store.read_manifest(asset, key)
                if m:
                    model_s[asset] += float(m.get("model_seconds") or 0.0)
            frames = store.read_manifest("keyframes", key)
            if frames and frames.get("dir"):
                keyframe_paths += sorted(Path(frames["dir"]).glob("*.jpg"))
        inside = sum(model_s.values())
        print(f"\nanalyse {args.files} files through Dagster (models warm): {wall:.1f} s wall, exit {rc}")
        step_breakdown(started, wall, model_s)
        print(f"share of wall time outside the models: {1 - inside / wall:.0%}")
        bare = bare_loop(files[1:], tmp / "bare")
        print(f"\nbare loop over the same {args.files} files (decode + models, no Dagster): {bare:.1f} s")
        print(f"Dagster overhead: 1 - bare / Dagster = {1 - bare / wall:.0%}  (target <= 25 %)")
        model_speeds(keyframe_paths[:40])
    return 0


if __name__ == "__main__":
    sys.exit(main())
