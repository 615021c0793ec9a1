"""CLIP configured for `tags`: zero-shot tags over the user's labels beside the ImageNet ones, keyframe
vectors in Qdrant `images`, and `medialens search --kind image`. No CLIP weights ship in a package
here, so this runs the real loading, embedding and indexing code with a tiny random checkpoint: it
checks the wiring, not the ranking quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_SETTINGS
from tests.media_assets.analysis.test_tags import tiny_clip  # noqa: F401 (fixture)
from tests.media_assets.test_cli import ml


def _images(env: dict[str, str]) -> list[dict]:
    from media_assets.plumbing.config import Paths
    from resources import build_resources

    return build_resources(Paths.from_env(env), env={})["qdrant"].scroll_payloads("images")


@pytest.mark.slow
def test_clip_tags_and_image_search(samples: dict[str, Path], cli_env: dict[str, str], tiny_clip: Path) -> None:  # noqa: F811
    config = Path(cli_env["MEDIALENS_HOME"]) / "medialens.yaml"
    config.write_text(TEST_SETTINGS + f"tags: {{clip_model: {tiny_clip}, clip_labels: [cat, astronaut]}}\n")
    files = [samples["chelsea.webp"], samples["astronaut.png"]]
    p = ml(cli_env, "analyse", *map(str, files), "--json")
    assert p.returncode == 0, p.stderr
    keys = {r["source_name"]: r["key"] for r in json.loads(p.stdout)["results"]}
    for key in keys.values():
        labels = {t["label"] for t in json.loads(ml(cli_env, "show", key, "--json").stdout)["tags"]}
        assert labels & {"cat", "astronaut"}, labels  # a softmax over two labels: one scores >= 0.5
    assert sorted(p["partition"] for p in _images(cli_env)) == sorted(keys.values())  # one keyframe each

    s = ml(cli_env, "search", "a photo of a cat", "--kind", "image", "--json")
    assert s.returncode == 0, s.stderr
    hits = json.loads(s.stdout)["hits"]
    assert {h["key"] for h in hits} == set(keys.values()) and all(h["source"] == "image" for h in hits)
    one = json.loads(ml(cli_env, "search", "cat", "--kind", "image", "--media", keys["chelsea.webp"], "--json").stdout)
    assert [h["key"] for h in one["hits"]] == [keys["chelsea.webp"]]

    # CLIP switched off again: tags is stale, its re-run removes the image vectors; image search explains
    config.write_text(TEST_SETTINGS)
    assert ml(cli_env, "analyse", *map(str, files), "--json").returncode == 0
    assert _images(cli_env) == []
    off = ml(cli_env, "search", "cat", "--kind", "image")
    assert off.returncode == 2 and "clip_model" in off.stderr
