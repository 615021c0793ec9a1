"""The installed `medialens` entry point, run as a user or script would (real subprocesses)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
MEDIALENS = Path(sys.executable).parent / "medialens"


def ml(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDIALENS), *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def analysed_home(base: Path, files: list[Path]) -> tuple[dict[str, str], dict[str, str]]:
    """A fresh home under `base` (the suite's settings) with `files` analysed through the CLI: its
    environment and media name -> key (for module-scoped fixtures that search or browse results)."""
    import json
    import os

    from tests.conftest import TEST_SETTINGS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIALENS_", "DAGSTER_", "QDRANT_"))}
    env.update(MEDIALENS_HOME=str(base / "home"), DAGSTER_HOME=str(base / "dagster_home"))
    (base / "home").mkdir()
    (base / "home" / "medialens.yaml").write_text(TEST_SETTINGS)
    p = ml(env, "analyse", *map(str, files), "--json")
    assert p.returncode == 0, p.stderr
    return env, {r["source_name"]: r["key"] for r in json.loads(p.stdout)["results"]}


@pytest.mark.slow
def test_analyse_good_and_bad_files_together(
    samples: dict[str, Path], bad_inputs: dict[str, Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    files = [
        samples["talk.mp4"],
        bad_inputs["text_as_jpg"],
        samples["speech.mp3"],
        bad_inputs["truncated_mkv"],
        bad_inputs["unicode_name"],
        samples["astronaut.png"],
    ]
    p = ml(cli_env, "analyse", *map(str, files), "--json")
    assert p.returncode == 1, p.stderr  # not every file succeeded
    results = {r["source_name"]: r for r in json.loads(p.stdout)["results"]}
    assert [r["status"] for r in results.values()] == ["ok", "rejected", "ok", "failed", "ok", "ok"]
    assert "notes.jpg" in results["notes.jpg"]["reason"] and "text" in results["notes.jpg"]["reason"]
    assert "truncated" in results["truncated.mkv"]["reason"]
    assert results["über café (final).jpg"]["key"].startswith("uber_cafe_final-")
    assert results["talk.mp4"]["keyframes"] >= 4 and results["talk.mp4"]["audio_s"] > 20
    assert "[6/6]" in p.stderr  # progress on stderr, JSON alone on stdout
    # the 5 admitted files went through one run together; the file that failed in it came out with its
    # reason, and the others went on together (two runs of neighbours: a range covers all between)
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(cli_env["DAGSTER_HOME"])) as instance:
        runs = sorted(
            (r for r in instance.get_runs() if r.job_name == "analyse_media"), key=lambda r: r.tags["medialens/files"]
        )
    assert [r.tags["medialens/files"] for r in runs] == ["2", "2", "5"], [r.tags for r in runs]
    assert results["truncated.mkv"]["key"] not in {r.tags.get("dagster/partition") for r in runs}

    show = ml(cli_env, "show", results["talk.mp4"]["key"], "--json")
    assert show.returncode == 0, show.stderr
    obj = json.loads(show.stdout)
    assert obj["kind"] == "video" and obj["source_name"] == "talk.mp4"
    assert len(obj["keyframes"]) == results["talk.mp4"]["keyframes"]
    assert all(Path(k["path"]).exists() for k in obj["keyframes"])
    for analysis in ("transcript", "ocr", "poses", "faces", "safety", "tags", "summary"):
        assert analysis in obj  # present, null when not analysed: never a missing key
    assert any("Crane offline" in line["text"] for line in obj["ocr"]["lines"])

    audio = json.loads(ml(cli_env, "show", results["speech.mp3"]["key"], "--json").stdout)
    assert audio["kind"] == "audio" and audio["keyframes"] is None and audio["audio"]["duration_s"] > 5
    assert audio["ocr"] is None and audio["tags"] is None  # no visual analyses of sound

    # The same bytes again, under another name: no second analysis, same key.
    copy = tmp_path / "renamed talk.mp4"
    shutil.copyfile(samples["talk.mp4"], copy)
    again = ml(cli_env, "analyse", str(copy), "--json")
    assert again.returncode == 0
    (r,) = json.loads(again.stdout)["results"]
    assert r["key"] == results["talk.mp4"]["key"] and "already analysed" in r["reason"]

    # Human output: a summary table with the status of every file.
    table = ml(cli_env, "analyse", str(samples["astronaut.png"]), str(bad_inputs["empty"]))
    assert table.returncode == 1
    assert "astronaut.png" in table.stdout and "rejected" in table.stdout and "empty file" in table.stdout


@pytest.mark.slow
def test_stale_after_a_settings_change(samples: dict[str, Path], cli_env: dict[str, str], tmp_path: Path) -> None:
    p = ml(cli_env, "analyse", str(samples["messi5.jpg"]), str(samples["speech.mp3"]), "--json")
    assert p.returncode == 0, p.stderr
    keys = sorted(r["key"] for r in json.loads(p.stdout)["results"])
    assert json.loads(ml(cli_env, "stale", "--json").stdout) == {"stale": []}

    config = tmp_path / "medialens.yaml"
    config.write_text(TEST_SETTINGS + "keyframes: {max_gap_s: 2.0}\n")
    env = {**cli_env, "MEDIALENS_CONFIG": str(config)}
    stale = json.loads(ml(env, "stale", "--json").stdout)["stale"]
    changed = [s for s in stale if s["asset"] == "keyframes"]
    assert sorted(s["partition"] for s in changed) == keys
    assert all(s["recorded_version"] != s["current_version"] for s in changed)
    # what reads keyframes is stale too (its inputs change), and nothing upstream or beside it
    dependants = {s["asset"] for s in stale} - {"keyframes"}
    assert dependants >= {"ocr_text", "tags"} and not dependants & {"media_file", "audio_track"}
    assert all(s["reason"].startswith("upstream stale: ") for s in stale if s["asset"] != "keyframes")
    only = json.loads(ml(env, "stale", "--asset", "audio_track", "--json").stdout)
    assert only == {"stale": []}

    bad = {**cli_env, "MEDIALENS_CONFIG": str(tmp_path / "bad.yaml")}
    (tmp_path / "bad.yaml").write_text("keyframes: {max_gapp: 2}\n")
    err = ml(bad, "stale", "--json")
    assert err.returncode == 2 and "max_gapp" in err.stderr


@pytest.mark.slow
def test_steps_run_in_the_pools_medialens_pool_names(samples: dict[str, Path], cli_env: dict[str, str]) -> None:
    """A pool per model (a GPU host's default, here set by name): each model step claims its own
    pool's slot at run time, and none claims the single `gpu` pool."""
    env = {**cli_env, "MEDIALENS_POOL": "gpu-test-{model}"}
    p = ml(env, "analyse", str(samples["astronaut.png"]), "--json")
    assert p.returncode == 0, p.stderr
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(cli_env["DAGSTER_HOME"])) as instance:
        keys = set(instance.event_log_storage.get_concurrency_keys())
        limits = {k: instance.event_log_storage.get_concurrency_info(k).slot_count for k in keys}
    image_models = {"ocr_text", "poses", "faces", "safety", "tags", "summary", "search_index"}
    assert {f"gpu-test-{m}" for m in image_models} <= keys and "gpu" not in keys, keys
    assert all(n == 1 for n in limits.values()), limits  # dagster.yaml pools.default_limit, per pool


def test_show_unknown_key(cli_env: dict[str, str]) -> None:
    p = ml(cli_env, "show", "nothing-0123456789", "--json")
    assert p.returncode == 1 and "no media with key" in p.stderr
