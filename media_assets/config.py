"""Where medialens keeps its data and how each asset is parameterised.

Everything a user can change lives in two places: environment variables (paths, services) and the
YAML file `MEDIALENS_CONFIG` (one mapping per asset). An asset's parameters that change its outputs
are hashed into its *version*, which is the asset's Dagster `code_version`: change a parameter and
`medialens stale` lists every partition analysed with the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The user's configuration file is unusable; the message names the file and the key."""


# Algorithm revision per asset: bump when the code changes what an asset writes.
ALGORITHM_REVISION: dict[str, str] = {
    "media_file": "1",
    "keyframes": "1",
    "audio_track": "1",
}

# Defaults per asset. Keys under "limits" guard ingest and do not change outputs, so they are
# left out of the version (see VERSIONLESS_KEYS).
DEFAULTS: dict[str, dict[str, Any]] = {
    "media_file": {
        "max_size_mb": 8192,
        "max_duration_s": 6 * 3600,
        "max_image_pixels": 100_000_000,  # 100 MP; a 40000x40000 PNG (1.6 GP) is refused unread
        "max_video_pixels": 8192 * 4320,  # 8K per frame
    },
    "keyframes": {
        "max_gap_s": 4.0,  # a keyframe at least this often, even without a shot change
        "min_gap_s": 0.5,  # never two keyframes closer than this
        "cut_threshold": 0.03,  # fraction of thumbnail cells that must change for a cut
        "cut_ratio": 3.0,  # ... and that fraction must exceed this multiple of the recent motion level
        "max_side": 1920,  # keyframe JPEGs are scaled down to this long side
        "jpeg_quality": 90,
    },
    "audio_track": {
        "sample_rate": 16000,
    },
}

VERSIONLESS_KEYS: dict[str, set[str]] = {
    "media_file": set(DEFAULTS["media_file"]),
}


@dataclass(frozen=True)
class Paths:
    """The data root and the folders under it (DESIGN: MEDIALENS_HOME, MEDIALENS_INBOX)."""

    home: Path
    inbox: Path
    store: Path
    qdrant: Path
    config_file: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        home = Path(env.get("MEDIALENS_HOME", "data")).expanduser().absolute()
        inbox = Path(env.get("MEDIALENS_INBOX", str(home / "inbox"))).expanduser().absolute()
        config_file = Path(env.get("MEDIALENS_CONFIG", str(home / "medialens.yaml"))).expanduser().absolute()
        return cls(home=home, inbox=inbox, store=home / "store", qdrant=home / "qdrant", config_file=config_file)


def load_user_config(path: Path) -> dict[str, dict[str, Any]]:
    """Read the YAML settings, rejecting unknown assets and keys so a typo never goes unnoticed."""
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of asset name -> settings, got {type(raw).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for asset, settings in raw.items():
        if asset not in DEFAULTS:
            raise ConfigError(f"{path}: unknown asset {asset!r}; known: {', '.join(sorted(DEFAULTS))}")
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: {asset}: expected a mapping of settings")
        for key, value in settings.items():
            if key not in DEFAULTS[asset]:
                raise ConfigError(
                    f"{path}: {asset}.{key}: unknown setting; known: {', '.join(sorted(DEFAULTS[asset]))}"
                )
            default = DEFAULTS[asset][key]
            if isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"{path}: {asset}.{key}: expected a number, got {value!r}")
        out[asset] = dict(settings)
    return out


@dataclass(frozen=True)
class Settings:
    """Resolved parameters and versions of every asset, read once per process."""

    params: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, config_file: Path) -> Settings:
        user = load_user_config(config_file)
        return cls(params={name: {**defaults, **user.get(name, {})} for name, defaults in DEFAULTS.items()})

    def of(self, asset: str) -> dict[str, Any]:
        return dict(self.params[asset])

    def version(self, asset: str) -> str:
        """`<revision>-<hash of output-changing params>`: the asset's code_version and store folder."""
        relevant = {k: v for k, v in self.params[asset].items() if k not in VERSIONLESS_KEYS.get(asset, set())}
        digest = hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
        return f"{ALGORITHM_REVISION[asset]}-{digest}"


@lru_cache(maxsize=1)
def current_settings() -> Settings:
    """The settings of this process (the code location reads them when it loads)."""
    return Settings.load(Paths.from_env().config_file)
