"""The code location loads, and its asset graph is what docs/design.md says (a snapshot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DynamicPartitionsDefinition

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_GRAPH = {
    "media_file": set(),
    "keyframes": {"media_file"},
    "audio_track": {"media_file"},
    "ocr_text": {"keyframes"},
    "poses": {"keyframes"},
    "faces": {"keyframes"},
    "safety": {"keyframes", "poses"},
    "tags": {"keyframes"},
    "transcript": {"audio_track"},
    "summary": {"media_file", "transcript", "ocr_text", "tags", "safety"},
    "search_index": {"transcript", "ocr_text", "tags", "summary"},
}
MODEL_ASSETS = {"ocr_text", "poses", "faces", "safety", "tags", "transcript", "summary", "search_index"}
LIBRARY_GRAPH = {"person_dossiers": {"faces"}}  # unpartitioned: over every media
# media_assets/assets/checks.py: asset -> its checks (none blocking, all in the analysis job)
EXPECTED_CHECKS = {
    "keyframes": {"video_has_keyframes"},
    "transcript": {"audible_speech_is_transcribed"},
    "search_index": {"vectors_match_index"},
    "faces": {"faces_have_embeddings"},
}


def test_asset_graph_snapshot() -> None:
    from media_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    actual = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_entity_keys}
        for k in graph.get_all_asset_keys()
    }
    assert actual == {**EXPECTED_GRAPH, **LIBRARY_GRAPH}
    assert graph.get(AssetKey("person_dossiers")).partitions_def is None
    for key in EXPECTED_GRAPH:
        node = graph.get(AssetKey(key))
        assert isinstance(node.partitions_def, DynamicPartitionsDefinition)
        assert node.partitions_def.name == "media"
        assert node.code_version and node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run and node.backfill_policy.max_partitions_per_run > 1
        # on CPU one pool for every heavy step: each uses all cores (ops_gpu.device.model_pool)
        assert node.pools == ({"gpu"} if key in MODEL_ASSETS else set()), key


def test_a_gpu_host_gets_a_pool_per_model() -> None:
    """MEDIALENS_DEVICE=cuda: faces of one run may share the GPU with OCR of another; two steps of one
    model never run at once. The pools are fixed when the code location loads, so a fresh process."""
    code = (
        "from media_assets.definitions import defs; g = defs.resolve_asset_graph(); "
        "import json; print(json.dumps({k.to_user_string(): sorted(g.get(k).pools) for k in g.get_all_asset_keys()}))"
    )
    env = {"PATH": "/usr/bin:/bin", "MEDIALENS_DEVICE": "cuda", "MEDIALENS_HOME": "/nonexistent"}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    pools = json.loads(p.stdout.strip().splitlines()[-1])
    assert pools == {k: [f"gpu-{k}"] if k in MODEL_ASSETS else [] for k in pools}
    assert set(pools) == set(EXPECTED_GRAPH) | set(LIBRARY_GRAPH)


def test_job_sensor_and_resources() -> None:
    from media_assets.definitions import defs

    job = defs.resolve_job_def("analyse_media")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(EXPECTED_GRAPH)
    sensor = defs.resolve_sensor_def("media_upload_sensor")
    assert sensor.job_name == "analyse_media"
    assert sensor.default_status.value == "RUNNING"
    assert {"store", "manifests", "inbox", "qdrant", "models", "inference_cache"} <= set(defs.resources or {})


def test_asset_checks_snapshot() -> None:
    from media_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
        assert not graph.get_check_spec(key).blocking, key  # a failed check never stops a run
    assert checks == EXPECTED_CHECKS
    job = defs.resolve_job_def("analyse_media")
    assert set(job.asset_layer.asset_graph.asset_check_keys) == set(graph.asset_check_keys)


@pytest.mark.slow
def test_definitions_validate_from_workspace(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    p = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PATH": str(dagster.parent) + ":/usr/bin:/bin",
            "DAGSTER_HOME": str(tmp_path),
            "MEDIALENS_HOME": str(tmp_path / "home"),
        },
    )
    assert p.returncode == 0, p.stdout + p.stderr
