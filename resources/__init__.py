"""Dagster resources of medialens, built from the environment (DESIGN.md: contract)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import EnvVar

from media_assets.config import Paths


def build_resources(paths: Paths, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources every asset, sensor and CLI command uses, pointing under `paths`."""
    from resources.inbox import InboxResource
    from resources.inference_cache import InferenceCache
    from resources.manifests import ManifestIOManager
    from resources.models import ModelRunner
    from resources.qdrant import QdrantResource
    from resources.store import MediaStore

    env = os.environ if env is None else env
    store = MediaStore(root=str(paths.store))
    qdrant = (
        QdrantResource(url=EnvVar("QDRANT_URL"), api_key=env.get("QDRANT_API_KEY"))
        if env.get("QDRANT_URL")
        else QdrantResource(path=str(paths.qdrant))
    )
    return {
        "store": store,
        "manifests": ManifestIOManager(store=store),
        "inbox": InboxResource(path=str(paths.inbox)),
        "qdrant": qdrant,
        "models": ModelRunner(device=env.get("MEDIALENS_DEVICE", "auto")),
        # Model results by input hash, so re-runs of unchanged inputs skip inference; off without REDIS_URL.
        "inference_cache": InferenceCache(url=EnvVar("REDIS_URL")) if env.get("REDIS_URL") else InferenceCache(),
    }
