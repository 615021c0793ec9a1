"""Vision model speed, and how much of a Dagster run is spent outside the models (issue 3).

1. Per model, frames/s on the sample keyframes, called directly in batches (the yardstick).
2. `medialens analyse` of N files (default 20, distinct bytes) through the real asset graph:
   wall time vs the time the assets spent inside the models (their `model_seconds`), so the
   share outside the models is decode, keyframes, audio, Parquet, Qdrant and Dagster itself.
   Target: <= 25 % for a 20-file run (models warm: the first file loads them and is left out).

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
        for asset, s in model_s.items():
            print(f"  inside {asset:<12} {s:6.1f} s")
        print(f"share of wall time outside the models: {1 - inside / wall:.0%}  (target <= 25 %)")
        model_speeds(keyframe_paths[:40])
    return 0


if __name__ == "__main__":
    sys.exit(main())
