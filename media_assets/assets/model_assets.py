"""What the model-backed analysis assets share: versions that include the weights, the GPU pools.

A model asset's version hashes its settings, the model id and the bytes of its weight files, so
new weights or a changed threshold make exactly that asset (and what depends on it) stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from media_assets.assets.on_keyframes import KeyframeRef, RunStats, keyframe_refs, run_on_keyframes
from media_assets.plumbing.config import Settings
from media_assets.plumbing.per_media import PER_MEDIA, step_log
from ops_gpu.device import model_pool
from resources.faults import fault_point
from resources.inference_cache import InferenceCache
from resources.model_files import fingerprint


def model_asset(name: str, group: str = "vision") -> dict[str, Any]:
    """`@asset` arguments of a model asset: per-media, in its model's pool (ops_gpu.device.model_pool:
    one heavy step at a time on CPU, one per model on a GPU host; dagster.yaml pools.default_limit)."""
    return {**PER_MEDIA, "name": name, "pool": model_pool(name), "group_name": group}


def model_version(settings: Settings, asset: str, module: ModuleType, params: Any) -> str:
    """The asset's code_version: settings + MODEL_ID + a fingerprint of the weight files."""
    try:
        weights = fingerprint(*module.model_files(params))
    except FileNotFoundError:
        weights = "missing"  # the asset fails at run time with the install hint; loading must not
    return settings.version(asset, f"{module.MODEL_ID}:{weights}")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A small Markdown table for the Dagster UI's metadata panel."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def infer_on_keyframes(
    context: Any,
    models: Any,
    factory: Any,
    params: Any,
    frames: Mapping[str, Any],
    key: str,
    what: str,
    batch_size: int,
    reuse_unchanged: bool = False,
    cache: InferenceCache | None = None,
    asset: str = "",
    version: str = "",
) -> tuple[list[KeyframeRef], list[tuple[KeyframeRef, list[Any]]], RunStats]:
    """A partition's keyframes through one model (loaded once per process on first need: not at all
    for media without keyframes or when every keyframe is in the `cache`), with progress and skipped
    frames in the run's log. Cached results are keyed by `asset`, its `version` and each keyframe
    file's sha256."""
    refs = keyframe_refs(dict(frames))
    loaded: list[Any] = []

    def model(images: Sequence[Any]) -> list[list[Any]]:
        fault_point(f"model:{asset or what}")
        if not loaded:
            loaded.append(models.load(factory, params))
        result: list[list[Any]] = loaded[0](images)
        return result

    if cache is not None and not (asset and version):
        raise ValueError("infer_on_keyframes: a cache needs the asset name and version to key results by")
    scope = cache.scope(asset, version, context.log.warning, context.run_id) if cache is not None else None
    log = step_log(context)
    results, stats = run_on_keyframes(
        model,
        refs,
        batch_size=batch_size,
        reuse_unchanged=reuse_unchanged,
        log=lambda msg: log.info(f"{key}: {what} {msg}"),
        warn=log.warning,
        cache=scope,
    )
    if stats.cache_hits:
        log.info(f"{key}: {what}: {stats.cache_hits} of {stats.frames} keyframes from the inference cache")
    return refs, results, stats


@dataclass(frozen=True)
class KeyframeModel:
    """One model over keyframes as an asset runs it: the model (factory + params), its name in the
    run log, its batch size, whether a held picture reuses the previous result, and the asset and
    version its cached results are keyed by. Each asset module declares one; `run` does the rest."""

    asset: str
    version: str
    factory: Any
    params: Any
    what: str
    batch_size: int
    reuse_unchanged: bool = False

    def run(
        self,
        context: Any,
        models: Any,
        frames: Mapping[str, Any],
        key: str,
        cache: InferenceCache | None = None,
    ) -> tuple[list[KeyframeRef], list[tuple[KeyframeRef, list[Any]]], RunStats]:
        """This model over one partition's keyframes (see infer_on_keyframes)."""
        return infer_on_keyframes(
            context,
            models,
            self.factory,
            self.params,
            frames,
            key,
            self.what,
            self.batch_size,
            reuse_unchanged=self.reuse_unchanged,
            cache=cache,
            asset=self.asset,
            version=self.version,
        )
