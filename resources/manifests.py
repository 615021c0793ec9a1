"""Assets hand each other small JSON manifests (paths and versions), never pickled arrays.

An asset returns `{partition_key: manifest}` for the partitions of its run; downstream assets
receive the same mapping for theirs. The manifests live in the media store, next to the tables
they point at, so the CLI and the UI read exactly what the assets wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext

from resources.store import MediaStore

Manifests = dict[str, dict[str, Any]]


class ManifestIOManager(ConfigurableIOManager):
    """Stores `{partition: manifest}` outputs as one JSON file per asset and partition."""

    store: MediaStore

    def handle_output(self, context: OutputContext, obj: Mapping[str, Mapping[str, Any]] | None) -> None:
        if obj is None:
            return
        asset = context.asset_key.path[-1]
        expected = set(context.asset_partition_keys) if context.has_asset_partitions else set()
        missing = expected - set(obj)
        if missing:
            raise ValueError(f"{asset}: no manifest for partitions {sorted(missing)}")
        for key, manifest in obj.items():
            self.store.write_manifest(asset, key, manifest)

    def load_input(self, context: InputContext) -> Manifests:
        asset = context.asset_key.path[-1]
        out: Manifests = {}
        for key in context.asset_partition_keys:
            manifest = self.store.read_manifest(asset, key)
            if manifest is None:
                raise FileNotFoundError(
                    f"{asset} has not been materialised for partition {key!r}: materialise it first"
                )
            out[key] = manifest
        return out
