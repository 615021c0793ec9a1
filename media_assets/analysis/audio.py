"""Extract the audio every speech model wants: 16 kHz mono PCM, written as a WAV file.

Streaming decode and resample (PyAV), so memory stays flat for hours of audio; the WAV is written
to a temporary name and renamed, so a failure never leaves a half file behind.
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from media_assets.analysis.inspect import MediaRejected


@dataclass(frozen=True)
class AudioTrack:
    """The extracted track and a few numbers worth showing the user."""

    path: str
    sample_rate: int
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float


def _dbfs(value: float) -> float:
    return round(20 * math.log10(value / 32768.0), 1) if value > 0 else -120.0


def extract_audio(
    path: Path,
    out_wav: Path,
    sample_rate: int = 16000,
    declared_duration_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    expect_full_duration: bool = False,
) -> AudioTrack | None:
    """Write the first audio stream as mono `sample_rate` WAV; None when there is no audio.

    `expect_full_duration` (audio-only files): a track that ends well before the duration the
    container declares is a truncated upload, not a short recording, and is refused.
    """
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_wav.with_name(out_wav.name + ".tmp")
    samples = 0
    sq_sum = 0.0
    peak = 0
    next_report = 0.1
    try:
        with av.open(str(path)) as cont:
            if not cont.streams.audio:
                return None
            stream = cont.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            with wave.open(str(tmp), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)

                def write(frames: list[av.AudioFrame]) -> None:
                    nonlocal samples, sq_sum, peak
                    for f in frames:
                        pcm = f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                        if pcm.size == 0:
                            continue
                        wav.writeframes(pcm.tobytes())
                        samples += pcm.size
                        as_float = pcm.astype(np.float64)
                        sq_sum += float(np.dot(as_float, as_float))
                        peak = max(peak, int(np.abs(pcm.astype(np.int32)).max()))

                for frame in cont.decode(stream):
                    write(resampler.resample(frame))
                    if progress and declared_duration_s:
                        done = samples / sample_rate / declared_duration_s
                        if done >= next_report:
                            progress(min(done, 1.0))
                            next_report += 0.1
                write(resampler.resample(None))
    except av.error.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        at = samples / sample_rate
        raise MediaRejected(path, f"audio is corrupt or truncated: decoding failed at {at:.1f} s ({exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if samples == 0:
        tmp.unlink(missing_ok=True)
        raise MediaRejected(path, "audio stream has no decodable samples")
    got = samples / sample_rate
    if expect_full_duration and declared_duration_s and declared_duration_s > 2 and got < 0.8 * declared_duration_s - 1:
        tmp.unlink(missing_ok=True)
        raise MediaRejected(
            path,
            f"audio is truncated: samples end at {got:.1f} s but the file declares {declared_duration_s:.1f} s",
        )
    os.replace(tmp, out_wav)
    rms = math.sqrt(sq_sum / samples)
    return AudioTrack(
        path=str(out_wav),
        sample_rate=sample_rate,
        duration_s=round(samples / sample_rate, 3),
        rms_dbfs=_dbfs(rms),
        peak_dbfs=_dbfs(peak),
    )
