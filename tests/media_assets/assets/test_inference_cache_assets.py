"""The inference cache through the real graph: a re-materialised partition reads every model result
from Redis (no inference, same tables), and a dead Redis only costs a warning in the run's log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, AssetsDefinition, DagsterInstance, EnvVar, materialize

from media_assets.definitions import defs
from media_assets.plumbing.config import Paths
from media_assets.service.samples import SAMPLES
from resources import build_resources
from resources.store import MediaStore
from tests.media_assets.test_graph import register_file
from tests.redis_server import RedisServer

VISION = ("ocr_text", "poses", "faces", "safety", "tags")
NAMES = ("media_file", "keyframes", "audio_track", *VISION, "transcript")
ASSETS = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition) and a.key.to_user_string() in NAMES]


def cached_resources(paths: Paths, url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The code location's resources with REDIS_URL set, as `make dev` would have them."""
    monkeypatch.setenv("REDIS_URL", url)
    resources = build_resources(paths, env={"REDIS_URL": url})
    assert resources["inference_cache"].url == EnvVar("REDIS_URL")  # resolved when the run starts
    return resources


def sample(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work").mkdir(exist_ok=True)
    SAMPLES[name](folder / name, folder / "work")
    return folder / name


def metadata(instance: DagsterInstance, asset: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def tables(store: MediaStore, key: str, assets: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for asset in assets:
        manifest = store.read_manifest(asset, key)
        assert manifest is not None and manifest.get("table"), asset
        out[asset] = pq.read_table(manifest["table"]).to_pylist()
    return out


def warnings_of(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.level == 30 and "inference cache" in e.user_message]


@pytest.mark.slow
def test_a_rematerialised_partition_reads_the_cache(
    tmp_path: Path,
    paths: Paths,
    instance: DagsterInstance,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = cached_resources(paths, redis_server.url, monkeypatch)
    store: MediaStore = resources["store"]
    key = register_file(sample("astronaut.png", tmp_path / "media"), store, instance)

    first = materialize(ASSETS, partition_key=key, instance=instance, resources=resources)
    assert first.success and not warnings_of(instance, first.run_id)
    for asset in VISION:
        m = metadata(instance, asset)
        assert (m["keyframes"], m["inferred_keyframes"], m["cache_hits"]) == (1, 1, 0), (asset, m)
    before = tables(store, key, VISION)
    assert before["poses"] and before["faces"] and before["tags"]  # something to compare
    assert redis_server.client().dbsize() == len(VISION)

    # The whole partition again (keyframes re-extracted too): every model result comes from Redis.
    second = materialize(ASSETS, partition_key=key, instance=instance, resources=resources)
    assert second.success and not warnings_of(instance, second.run_id)
    for asset in VISION:
        m = metadata(instance, asset)
        assert (m["keyframes"], m["inferred_keyframes"], m["cache_hits"]) == (1, 0, 1), (asset, m)
        assert m["model_seconds"] == 0, (asset, m)
    assert tables(store, key, VISION) == before  # the same rows, bit for bit
    assert resources["qdrant"].count("faces", partition=key) == 1  # the face vector is still written


@pytest.mark.slow
def test_a_transcript_is_cached_by_its_audio(
    tmp_path: Path,
    paths: Paths,
    instance: DagsterInstance,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = cached_resources(paths, redis_server.url, monkeypatch)
    store: MediaStore = resources["store"]
    key = register_file(sample("speech.mp3", tmp_path / "media"), store, instance)
    audio = [a for a in ASSETS if a.key.to_user_string() in ("media_file", "audio_track", "transcript")]
    assert materialize(audio, partition_key=key, instance=instance, resources=resources).success
    assert metadata(instance, "transcript")["cache_hits"] == 0
    before = tables(store, key, ("transcript",))
    assert before["transcript"]
    assert materialize(audio, partition_key=key, instance=instance, resources=resources).success
    m = metadata(instance, "transcript")
    assert m["cache_hits"] == 1 and m["model_seconds"] == 0 and m["language"] == "en"
    assert tables(store, key, ("transcript",)) == before


@pytest.mark.slow
def test_a_dead_redis_is_a_warning_not_a_failure(
    tmp_path: Path,
    paths: Paths,
    instance: DagsterInstance,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cache that worked, then the server died before the re-run: the run computes everything.
    resources = cached_resources(paths, redis_server.url, monkeypatch)
    store: MediaStore = resources["store"]
    key = register_file(sample("astronaut.png", tmp_path / "media"), store, instance)
    assert materialize(ASSETS, partition_key=key, instance=instance, resources=resources).success
    redis_server.kill()
    result = materialize(ASSETS, partition_key=key, instance=instance, resources=resources, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    for asset in VISION:
        m = metadata(instance, asset)
        assert (m["inferred_keyframes"], m["cache_hits"]) == (1, 0), (asset, m)
    (warning,) = warnings_of(instance, result.run_id)  # once per run, not per asset or frame
    assert f"127.0.0.1:{redis_server.port}" in warning
