"""The vision assets through the real graph: real models on generated media, a real instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from media_assets.definitions import defs
from media_assets.service.show import show
from resources.store import MediaStore
from tests.media_assets.test_graph import register_file

ALL = [a for a in defs.assets or [] if a.partitions_def is not None]  # the per-media graph


def analyse(path: Path, instance: DagsterInstance, resources: dict[str, Any]) -> str:
    key = register_file(path, resources["store"], instance)
    result = materialize(ALL, partition_key=key, instance=instance, resources=resources, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    return key


@pytest.mark.slow
def test_talk_slides_are_read_once_per_slide(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = analyse(samples["talk.mp4"], instance, resources)
    report = show(store, key)
    lines = [line["text"] for line in report["ocr"]["lines"]]
    for slide in ("Quarterly results", "Crane offline at pier 4", "Safety first: wear helmets"):
        assert any(slide in line for line in lines), (slide, lines)
    assert any("Größe" in line and "Übermaß" in line for line in lines), lines
    crane = next(line for line in report["ocr"]["lines"] if "Crane" in line["text"])
    assert 5.5 <= crane["first_t"] <= 6.5 and crane["last_t"] > crane["first_t"]  # seen over several keyframes
    manifest = store.read_manifest("ocr_text", key)
    assert manifest is not None and manifest["reused_keyframes"] >= 1  # a held slide is read once
    mat = instance.get_latest_materialization_event(AssetKey("ocr_text"))
    assert mat is not None and mat.asset_materialization is not None
    assert mat.asset_materialization.metadata["lines"].value == len(lines)
    assert mat.tags.get("dagster/code_version") == manifest["version"]


@pytest.mark.slow
def test_a_cat_is_tagged_as_a_cat(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    key = analyse(samples["chelsea.webp"], instance, resources)
    tags = show(resources["store"], key)["tags"]
    assert any("cat" in t["label"] or t["label"] == "tabby" for t in tags[:3]), tags


@pytest.mark.slow
def test_audio_only_media_have_no_visual_analyses(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = analyse(samples["speech.mp3"], instance, resources)
    report = show(store, key)
    assert report["keyframes"] is None and report["ocr"] is None and report["tags"] is None
    assert report["poses"] is None and report["faces"] is None and report["safety"] is None
    manifest = store.read_manifest("ocr_text", key)
    assert manifest is not None and pq.read_table(manifest["table"]).num_rows == 0


@pytest.mark.slow
def test_a_corrupt_keyframe_is_skipped_and_reported(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = register_file(samples["clip.webm"], store, instance)
    assert materialize(ALL[:3], partition_key=key, instance=instance, resources=resources).success
    frames = store.read_manifest("keyframes", key)
    assert frames is not None and frames["count"] >= 2
    first = sorted(Path(frames["dir"]).glob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:200])  # damaged on disk after keyframes ran
    vision = [a for a in ALL if a.key.to_user_string() in ("ocr_text", "tags", "poses", "faces", "safety")]
    result = materialize(
        [*ALL[:3], *vision], selection=vision, partition_key=key, instance=instance, resources=resources
    )
    assert result.success
    tags = store.read_manifest("tags", key)
    assert tags is not None and tags["skipped_keyframes"] == 1 and tags["tags"] > 0
    for asset in ("poses", "faces", "safety"):
        manifest = store.read_manifest(asset, key)
        assert manifest is not None and manifest["skipped_keyframes"] == 1, asset


@pytest.mark.slow
def test_a_portrait_gets_a_pose_a_face_vector_and_a_safe_verdict(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = analyse(samples["astronaut.png"], instance, resources)
    report = show(store, key)
    (frame,) = report["poses"]
    assert len(frame["persons"]) == 1 and len(frame["persons"][0]["keypoints"]) == 33
    nose_x, nose_y, nose_vis = frame["persons"][0]["keypoints"][0]
    assert 150 <= nose_x <= 260 and 30 <= nose_y <= 170 and nose_vis > 0.5
    (face,) = report["faces"]
    assert face["face_id"].startswith(f"{key}/") and len(face["box"]) == 4
    assert resources["qdrant"].count("faces", partition=key) == 1  # the embedding is searchable
    assert report["safety"]["verdict"] == "safe"
    assert any(label["label"].startswith("FACE_") for label in report["safety"]["labels"])
    assert report["transcript"] is None  # an image has no sound

    # analysing the same partition again replaces its face vector, never duplicates it
    result = materialize(ALL, partition_key=key, instance=instance, resources=resources)
    assert result.success and resources["qdrant"].count("faces", partition=key) == 1


@pytest.mark.slow
def test_speech_is_transcribed_with_language_and_times(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = analyse(samples["speech.mp3"], instance, resources)
    transcript = show(store, key)["transcript"]
    assert transcript["language"] == "en"
    assert "harbour" in transcript["text"].lower() or "harbor" in transcript["text"].lower(), transcript
    # espeak-ng's robot voice: the first sentences come through cleanly, "crane at pier four" does not
    assert "good morning" in transcript["text"].lower() and "offline" in transcript["text"].lower(), transcript
    segments = transcript["segments"]
    assert segments and all(0 <= s["start"] < s["end"] for s in segments)
    mat = instance.get_latest_materialization_event(AssetKey("transcript"))
    assert mat is not None and mat.asset_materialization is not None
    assert mat.asset_materialization.metadata["language"].value == "en"
    manifest = store.read_manifest("transcript", key)
    # recorded, not judged: speed is bench/audio.py's business (a busy machine runs slower than realtime)
    assert manifest is not None and manifest["model_seconds"] > 0 and manifest["realtime_factor"] > 0


@pytest.mark.slow
def test_a_two_minute_recording_logs_its_progress(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess

    from media_assets.assets.audio import audio_track
    from media_assets.assets.ingest import media_file
    from media_assets.assets.transcript import transcript
    from media_assets.service.samples import SPEECH, speak

    # distinct sentences (whisper skips ahead over repeated audio): a bit over two minutes of speech
    colours = ["red", "green", "blue", "yellow", "white", "black"]
    lines = [f"Crate number {n} is {colours[n % 6]} and weighs {n * 7} kilograms." for n in range(1, 31)]
    wav = speak(SPEECH + " " + " ".join(lines), tmp_path / "long.wav")
    long = tmp_path / "long.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "48k", str(long)], check=True
    )
    key = register_file(long, resources["store"], instance)
    result = materialize(
        [media_file, audio_track, transcript], partition_key=key, instance=instance, resources=resources
    )
    assert result.success
    audio = resources["store"].read_manifest("audio_track", key)
    assert audio["duration_s"] >= 120
    logs = [e.user_message for e in instance.all_logs(result.run_id) if "transcribed" in (e.user_message or "")]
    done = [int(m.split("transcribed ")[1].split("%")[0]) for m in logs]  # a line per further quarter
    assert len(done) >= 3 and done == sorted(done) and done[-1] == 100, logs
    spoken = show(resources["store"], key)["transcript"]["text"].lower()
    assert "harbour" in spoken or "harbor" in spoken, spoken  # Whisper may spell it either way


@pytest.mark.slow
def test_speech_runs_beside_the_vision_models_and_held_pictures_reuse_results(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    from media_assets.assets.transcript import AHEAD

    store: MediaStore = resources["store"]
    key = analyse(samples["talk.mp4"], instance, resources)
    run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id
    messages = [r.user_message for r in instance.all_logs(run_id)]
    assert any(f"{key}: transcript done in the background, beside the vision models" in m for m in messages), messages
    assert AHEAD.pending() == 0  # taken by the transcript step
    steps = {s.step_key: s for s in instance.get_run_step_stats(run_id)}
    vision = ("faces", "ocr_text", "poses", "safety", "tags")
    # the transcript step goes after the vision steps: its work ran in the background meanwhile
    assert steps["transcript"].start_time >= max(steps[v].end_time for v in vision) - 0.01
    text = " ".join(s["text"] for s in show(store, key)["transcript"]["segments"]).lower()
    assert "offline until friday" in text and "helmet" in text
    for asset in vision:  # a held slide is analysed once by every model
        manifest = store.read_manifest(asset, key)
        assert manifest is not None and manifest["reused_keyframes"] >= 1, (asset, manifest)
    assert store.read_manifest("faces", key)["faces"] == 0  # slide text is no face

    # a run without the transcript starts nothing in the background
    sub = [a for a in ALL if a.key.to_user_string() in ("media_file", "audio_track")]
    again = materialize(sub, partition_key=key, instance=instance, resources=resources)
    assert again.success and AHEAD.pending() == 0
