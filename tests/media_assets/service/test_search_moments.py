"""A spoken hit jumps to the sentence that was asked about, not to the start of its transcript window.

The recording is made here from six espeak-ng sentences joined end to end, so each sentence's time
is known from the audio itself (not from the transcript); the real graph transcribes and indexes it,
and `medialens search` must land on the fourth sentence. Sentences 2 and 3 are about the same man,
so the window that matches best begins with sentence 3, ~3 s before the answer: the window's own
start would fail the 1 s bound.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from media_assets.service.samples import speak
from tests.media_assets.service.test_search import hits
from tests.media_assets.test_cli import ml

STORY = [
    "The village lay in a green valley beside a wide river.",
    "Everybody there knew the miller, a rich man with a hard face.",
    "He never smiled, and he never gave anything away.",
    "People said the miller was cold hearted and selfish, and nobody trusted him.",  # asked about
    "In spring the river flooded the fields near the old bridge.",
    "The farmers planted barley and rye when the water was gone.",
]


def story(out: Path, work: Path) -> list[float]:
    """STORY spoken into `out` (WAV), one sentence after the other; the second each one starts at."""
    starts, frames = [], 0
    with wave.open(str(out), "wb") as dst:
        for i, sentence in enumerate(STORY):
            with wave.open(str(speak(sentence, work / f"sentence{i}.wav"))) as src:
                if i == 0:
                    dst.setparams(src.getparams())
                rate = src.getframerate()
                starts.append(frames / rate)
                frames += src.getnframes()
                dst.writeframes(src.readframes(src.getnframes()))
    return starts


@pytest.mark.slow
def test_spoken_hit_starts_at_the_sentence_asked_about(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    media = tmp_path / "story.wav"
    starts = story(media, tmp_path / "work")
    p = ml(cli_env, "analyse", str(media), "--json")
    assert p.returncode == 0, p.stderr
    (key,) = [r["key"] for r in json.loads(p.stdout)["results"]]

    found = hits(cli_env, "cold hearted and selfish", "--media", key, "--kind", "transcript")
    best = found[0]
    assert best["key"] == key and best["source"] == "transcript", found
    assert abs(best["start"] - starts[3]) <= 1.0, (best, starts)
    assert starts[3] < best["end"] <= starts[4] + 1.0, (best, starts)  # that sentence, not its window
    assert "selfish" in best["text"].lower()
    # the hits of the overlapping windows around it collapse into this one
    assert sum(1 for h in found if abs(h["start"] - best["start"]) < 1.0) == 1, found
