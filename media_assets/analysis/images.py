"""The image contract every keyframe model shares: an RGB uint8 HxWx3 numpy array.

Checked once here so each model refuses (or skips) a bad frame with the same words, naming the
model and the frame's index in its batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rgb_image(img: Any, i: int, model: str) -> np.ndarray:
    """`img` as a C-contiguous RGB uint8 HxWx3 array; ValueError saying what it is instead."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{model}: image {i} is a {type(img).__name__}, not an RGB uint8 HxWx3 numpy array")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{model}: image {i} is {img.dtype} {img.shape}, not an RGB uint8 HxWx3 array")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{model}: image {i} is empty {img.shape}")
    return np.ascontiguousarray(img)
