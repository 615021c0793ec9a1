"""Dagster resources of medialens, built from the environment (docs/contract.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import EnvVar

from media_assets.plumbing.config import Paths, env_float


def build_resources(paths: Paths, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources every asset, sensor and CLI command uses, pointing under `paths`."""
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
        "inbox": inbox_resource(paths, env),
        "qdrant": qdrant,
        "models": ModelRunner(device=env.get("MEDIALENS_DEVICE", "auto")),
        # Model results by input hash, so re-runs of unchanged inputs skip inference; off without REDIS_URL.
        "inference_cache": InferenceCache(url=EnvVar("REDIS_URL")) if env.get("REDIS_URL") else InferenceCache(),
    }


def inbox_resource(paths: Paths, env: Mapping[str, str]) -> Any:
    """The inbox: the folder `paths.inbox`, or the S3 prefix MEDIALENS_INBOX=s3://bucket/prefix
    (endpoint from MEDIALENS_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; region from
    AWS_DEFAULT_REGION; credentials from boto3's usual chain)."""
    from resources.inbox import S3_SCHEME, InboxResource

    url = env.get("MEDIALENS_INBOX", "")
    if not url.startswith(S3_SCHEME):
        quiet = env_float(env, "MEDIALENS_INBOX_QUIET_SECONDS", 2.0)
        return InboxResource(path=str(paths.inbox), quiet_seconds=max(0.0, quiet))
    endpoint = (
        env.get("MEDIALENS_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    )
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None
    return InboxResource(path=url.rstrip("/"), endpoint_url=endpoint, region=region)
