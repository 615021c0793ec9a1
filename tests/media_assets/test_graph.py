"""The real asset graph on generated media, with a real Dagster instance (no mocks)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, materialize

from media_assets.analysis.inspect import Limits
from media_assets.assets.audio import audio_track
from media_assets.assets.frames import keyframes
from media_assets.assets.ingest import media_file
from media_assets.assets.jobs import ANALYSE_JOB_NAME, analyse_media_job
from media_assets.plumbing.partitions import MEDIA_PARTITIONS_NAME
from media_assets.plumbing.registration import admit, register
from resources.store import MediaStore

ASSETS = [media_file, keyframes, audio_track]


def register_file(path: Path, store: MediaStore, instance: DagsterInstance) -> str:
    a = admit(path, Limits(), instance.get_dynamic_partitions(MEDIA_PARTITIONS_NAME))
    assert a.status == "new", a.reason
    assert a.key is not None
    register(store, a, path, move=False)
    instance.add_dynamic_partitions(MEDIA_PARTITIONS_NAME, [a.key])
    return a.key


def run_one(key: str, instance: DagsterInstance, resources: dict[str, Any], **kw: Any) -> Any:
    return materialize(ASSETS, partition_key=key, instance=instance, resources=resources, **kw)


@pytest.mark.slow
def test_video_with_audio(samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]) -> None:
    store: MediaStore = resources["store"]
    key = register_file(samples["talk.mp4"], store, instance)
    result = run_one(key, instance, resources)
    assert result.success

    media = store.read_manifest("media_file", key)
    assert media is not None and media["kind"] == "video"
    assert Path(media["path"]).is_relative_to(store.path / "media")
    assert 20 <= media["duration_s"] <= 30

    frames = store.read_manifest("keyframes", key)
    assert frames is not None
    table = pq.read_table(frames["table"]).to_pylist()
    assert len(table) == frames["count"] >= 4  # four slides at least
    assert all(Path(r["path"]).exists() for r in table)
    ts = [r["t"] for r in table]
    assert ts == sorted(ts) and ts[0] == 0.0
    assert max(b - a for a, b in zip(ts, ts[1:], strict=False)) <= 4.0 + 0.1  # max gap honoured
    assert Path(frames["table"]) == store.table_path("keyframes", frames["version"], key)

    audio = store.read_manifest("audio_track", key)
    assert audio is not None and audio["path"]
    with wave.open(audio["path"]) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - media["duration_s"]) < 1.0

    mat = instance.get_latest_materialization_event(AssetKey("keyframes"))
    assert mat is not None and mat.asset_materialization is not None
    md = mat.asset_materialization.metadata
    assert md["dagster/row_count"].value == frames["count"]
    assert "preview" in md and md["version"].value == frames["version"]
    assert mat.tags.get("dagster/code_version") == frames["version"]


@pytest.mark.slow
def test_image_audio_and_silent_video(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    expected = {
        "astronaut.png": ("image", 1, False),
        "speech.mp3": ("audio", 0, True),
        "street.mkv": ("video", None, False),
    }
    for name, (kind, n_frames, has_audio) in expected.items():
        key = register_file(samples[name], store, instance)
        assert run_one(key, instance, resources).success, name
        assert store.read_manifest("media_file", key)["kind"] == kind  # type: ignore[index]
        frames = store.read_manifest("keyframes", key)
        assert frames is not None
        if n_frames is not None:
            assert frames["count"] == n_frames, name
        else:
            assert frames["count"] >= 2, name
        assert (store.read_manifest("audio_track", key)["path"] is not None) == has_audio, name  # type: ignore[index]


@pytest.mark.slow
def test_rematerialising_replaces_and_keeps_one_copy(
    samples: dict[str, Path], instance: DagsterInstance, resources: dict[str, Any]
) -> None:
    store: MediaStore = resources["store"]
    key = register_file(samples["clip.webm"], store, instance)
    assert run_one(key, instance, resources).success
    frames = store.read_manifest("keyframes", key)
    assert frames is not None
    first = sorted(p.name for p in Path(frames["dir"]).iterdir())
    assert run_one(key, instance, resources).success
    again = store.read_manifest("keyframes", key)
    assert again is not None
    assert sorted(p.name for p in Path(again["dir"]).iterdir()) == first
    assert len(list((store.path / "media").rglob("*.webm"))) == 1


@pytest.mark.slow
def test_truncated_video_fails_only_its_partition_and_loses_nothing(
    samples: dict[str, Path],
    bad_inputs: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
) -> None:
    store: MediaStore = resources["store"]
    good = register_file(samples["messi5.jpg"], store, instance)
    assert run_one(good, instance, resources).success
    before = sorted(p for p in store.path.rglob("*") if p.is_file())

    bad = register_file(bad_inputs["truncated_mkv"], store, instance)
    result = run_one(bad, instance, resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert "truncated.mkv" in message and "truncated" in message

    after = {p for p in store.path.rglob("*") if p.is_file()}
    assert set(before) <= after  # the good partition's files are all still there
    assert store.read_manifest("keyframes", good) is not None


@pytest.mark.slow
def test_one_run_covers_several_partitions_and_names_the_bad_one(
    samples: dict[str, Path],
    bad_inputs: dict[str, Path],
    instance: DagsterInstance,
    resources: dict[str, Any],
) -> None:
    store: MediaStore = resources["store"]
    keys = [
        register_file(samples["astronaut.png"], store, instance),
        register_file(bad_inputs["truncated_mkv"], store, instance),
        register_file(samples["speech.mp3"], store, instance),
    ]
    job = Definitions(assets=ASSETS, jobs=[analyse_media_job], resources=resources).resolve_job_def(ANALYSE_JOB_NAME)
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "keyframes"
    description = failure.step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert keys[1] in description and keys[0] not in description
    # the good partitions were processed in the same step before the failure was reported
    assert store.read_manifest("keyframes", keys[0]) is None  # no output: the step failed as a whole
    assert store.table_path("keyframes", _version("keyframes"), keys[0]).exists()
    # audio_track is independent of keyframes and succeeded for all three in one step
    for k in keys:
        assert store.read_manifest("audio_track", k) is not None


def _version(asset: str) -> str:
    from media_assets.plumbing.config import current_settings

    return current_settings().version(asset)
