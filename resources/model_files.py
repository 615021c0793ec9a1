"""Model weights that ship inside packages but not in an importable one.

BlazePose and BlazeFace `.tflite` files ship inside the `mediapipe==0.10.21` wheel, whose runtime
pins numpy<2; we run them with ai-edge-litert instead and take only the files. `make install`
calls `python -m resources.model_files fetch`, which downloads that wheel from the package index
once (install time, never at run time) and extracts the files into the models folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
MEDIAPIPE_FILES = {
    "pose_detection.tflite": "mediapipe/modules/pose_detection/pose_detection.tflite",
    "pose_landmark_full.tflite": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "face_detection_short_range.tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
    ),
}


class ModelFileMissing(FileNotFoundError):
    """A model file is not installed; the message says how to install it."""


def models_dir() -> Path:
    """`MEDIALENS_MODELS`, else `<venv>/share/medialens/models`."""
    return Path(os.environ.get("MEDIALENS_MODELS", Path(sys.prefix) / "share" / "medialens" / "models"))


def mediapipe_model(name: str) -> Path:
    """Path of one of MEDIAPIPE_FILES, or a clear error naming the install step."""
    path = models_dir() / "mediapipe" / name
    if not path.exists():
        raise ModelFileMissing(
            f"{path} is missing: run `make install` (or `{sys.executable} -m resources.model_files fetch`)"
        )
    return path


def fingerprint(*paths: Path) -> str:
    """Short hash of weight files' bytes: part of a model version, so new weights mean stale results."""
    h = hashlib.sha256()
    for p in paths:
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:10]


def fetch_mediapipe(dest: Path | None = None) -> list[Path]:
    """Download the mediapipe wheel (no dependencies, nothing installed) and extract the models."""
    target = (dest or models_dir()) / "mediapipe"
    wanted = {n: target / n for n in MEDIAPIPE_FILES}
    if all(p.exists() for p in wanted.values()):
        return list(wanted.values())
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp, MEDIAPIPE_WHEEL],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("mediapipe-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            for name, member in MEDIAPIPE_FILES.items():
                wanted[name].write_bytes(zf.read(member))
    return list(wanted.values())


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m resources.model_files fetch")
    for p in fetch_mediapipe():
        print(p)
