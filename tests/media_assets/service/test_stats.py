"""`medialens stats` through the real entry point, on a home that `medialens analyse` filled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.slow

MEDIALENS = Path(sys.executable).parent / "medialens"
FILES = ("talk.mp4", "speech.mp3", "astronaut.png")


def ml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, Path]) -> dict[str, Any]:
    """One `analyse` of a video, an audio file and a photo (one run), like cli_env's home."""
    root = tmp_path_factory.mktemp("stats")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster_home"))
    (root / "home").mkdir()
    (root / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    p = ml(env, "analyse", *(str(samples[n]) for n in FILES), "--json")
    assert p.returncode == 0, p.stderr
    results = json.loads(p.stdout)["results"]
    return {"env": env, "root": root, "results": {r["source_name"]: r for r in results}}


def test_stats_json(home: dict[str, Any]) -> None:
    p = ml(home["env"], "stats", "--json")
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)  # exactly one JSON document on stdout

    assert stats["media"]["total"] == 3
    assert stats["media"]["by_kind"] == {"video": 1, "image": 1, "audio": 1}
    durations = sum(r["duration_s"] or 0.0 for r in home["results"].values())
    assert durations > 20 and stats["hours_analysed"] == pytest.approx(durations / 3600, abs=1e-3)
    store = Path(home["env"]["MEDIALENS_HOME"]) / "store"
    on_disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file() and not p.is_symlink())
    assert stats["store_bytes"] == on_disk > 0
    assert stats["vectors"]["text"] > 0 and stats["vectors"]["faces"] >= 1  # the astronaut's face

    assets = {a["asset"]: a for a in stats["assets"]}
    assert [a["asset"] for a in stats["assets"]][:3] == ["media_file", "keyframes", "audio_track"]
    for name in ("media_file", "keyframes", "audio_track", "transcript", "ocr_text", "search_index"):
        a = assets[name]
        assert a["partitions"] == a["timed"] == 3, a
        assert a["total_s"] > 0 and a["mean_s"] == pytest.approx(a["total_s"] / 3, abs=0.01)
        assert a["peak_rss_mib"] > 50 and a["cpu_s"] >= 0 and a["media_s_per_s"] > 0
    assert assets["transcript"]["model_s"] > 0 and assets["keyframes"]["model_s"] is None
    assert assets["person_dossiers"]["partitions"] == 0  # over the whole library, not per media

    runs = stats["runs"]
    assert runs["considered"] >= 1 and runs["by_status"].get("SUCCESS", 0) >= 1
    analysis = [r for r in runs["recent"] if r["job"] == "analyse_media"]
    assert analysis and analysis[0]["partitions"] == 3 and analysis[0]["wall_s"] > 0
    assert analysis[0]["media_s_per_s"] > 0 and runs["media_s_per_s"] > 0
    steps = {a["asset"]: a for a in runs["assets"]}
    assert steps["transcript"]["partitions"] == 3 and steps["transcript"]["seconds"] > 0
    assert steps["keyframes"]["partitions"] == 3

    one = json.loads(ml(home["env"], "stats", "--json", "--runs", "1").stdout)["runs"]
    assert one["considered"] == 1 and len(one["recent"]) == 1


def test_stats_for_people(home: dict[str, Any]) -> None:
    p = ml(home["env"], "stats")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "media: 3 (1 video, 1 image, 1 audio)" in out and "h analysed" in out
    assert "vectors: " in out and "text " in out
    for header in ("asset", "partitions", "total s", "peak MiB", "media s/s", "step s"):
        assert header in out, header
    assert "transcript" in out and "last " in out


def test_stats_on_an_empty_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "dagster_home"))
    p = ml(env, "stats", "--json")
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)
    assert stats["media"] == {
        "total": 0,
        "by_kind": {"video": 0, "image": 0, "audio": 0},
        "not_ingested": 0,
        "original_bytes": 0,
    }
    assert stats["vectors"] == {} and stats["assets"] == [] and stats["runs"]["considered"] == 0
    assert not (tmp_path / "home" / "qdrant").exists()  # looking created nothing
