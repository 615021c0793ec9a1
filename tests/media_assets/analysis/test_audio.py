import wave
from pathlib import Path

import pytest

from media_assets.analysis.audio import extract_audio
from media_assets.analysis.inspect import Limits, MediaRejected, inspect_media


@pytest.mark.parametrize("name", ["speech.mp3", "german.ogg", "talk.mp4", "clip.webm"])
def test_16k_mono_wav(samples: dict[str, Path], tmp_path: Path, name: str) -> None:
    info = inspect_media(samples[name], Limits())
    track = extract_audio(samples[name], tmp_path / "a.wav", declared_duration_s=info.duration_s)
    assert track is not None
    with wave.open(track.path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - track.duration_s) < 0.001
    assert info.duration_s is not None and abs(track.duration_s - info.duration_s) < 0.5
    assert -60 < track.rms_dbfs < 0  # speech, not silence
    assert not list(tmp_path.glob("*.tmp"))


def test_video_without_sound_has_no_track(samples: dict[str, Path], tmp_path: Path) -> None:
    assert extract_audio(samples["street.mkv"], tmp_path / "a.wav") is None
    assert not (tmp_path / "a.wav").exists()


def test_truncated_audio_file_is_refused(samples: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp3"
    data = samples["speech.mp3"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    # The MP3's Xing header still declares the full length: that is how a cut upload shows.
    declared = inspect_media(cut, Limits()).duration_s
    full = inspect_media(samples["speech.mp3"], Limits()).duration_s
    assert declared is not None and full is not None and abs(declared - full) < 0.5
    with pytest.raises(MediaRejected, match="truncated"):
        extract_audio(cut, tmp_path / "a.wav", declared_duration_s=declared, expect_full_duration=True)
    assert not (tmp_path / "a.wav").exists()
