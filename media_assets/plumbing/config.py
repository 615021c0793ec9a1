"""Where medialens keeps its data and how each asset is parameterised.

Everything a user can change lives in two places: environment variables (paths, services) and the
YAML file `MEDIALENS_CONFIG` (one mapping per asset). An asset's parameters that change its outputs
are hashed into its *version*, which is the asset's Dagster `code_version`: change a parameter and
`medialens stale` lists every partition analysed with the old one.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The user's configuration file is unusable; the message names the file and the key."""


# Algorithm revision per asset: bump when the code changes what an asset writes.
ALGORITHM_REVISION: dict[str, str] = {
    "media_file": "1",
    # 2: frames no other frame refers to are not decoded; a shot change is measured per frame interval
    "keyframes": "2",
    "audio_track": "1",
    "ocr_text": "1",
    "poses": "1",
    "faces": "1",
    "safety": "1",
    "tags": "1",
    "transcript": "1",
    "summary": "1",
    # 2: the summary is indexed too
    # 3: transcript points keep their sentences (hits start where the words are)
    # 4: every point has its BM25 words (hybrid ranking, analysis/words.py), media kind and language
    "search_index": "4",
    "person_dossiers": "1",
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

# Model-backed analyses: their settings are the Params dataclass of their analysis module, so the
# defaults live next to the code that uses them. Imported only when needed (the CLI starts fast).
MODEL_PARAMS: dict[str, str] = {
    "ocr_text": "media_assets.analysis.ocr:OcrParams",
    "poses": "media_assets.analysis.poses:PoseParams",
    "faces": "media_assets.analysis.faces:FaceParams",
    "safety": "media_assets.analysis.safety:SafetyParams",
    "tags": "media_assets.analysis.tags:TagParams",
    "transcript": "media_assets.analysis.transcript:TranscriptParams",
    "summary": "media_assets.analysis.summary:SummaryParams",
    "search_index": "media_assets.analysis.text_search:TextParams",
    "person_dossiers": "media_assets.analysis.people:PeopleParams",
}


def known_assets() -> list[str]:
    return sorted({*DEFAULTS, *MODEL_PARAMS})


def defaults_of(asset: str) -> dict[str, Any]:
    """The default settings of an asset."""
    if asset in DEFAULTS:
        return dict(DEFAULTS[asset])
    module, _, name = MODEL_PARAMS[asset].partition(":")
    cls = getattr(importlib.import_module(module), name)
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls)}


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """A number from the environment (unset or blank: `default`), with an error naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


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
        if asset not in DEFAULTS and asset not in MODEL_PARAMS:
            raise ConfigError(f"{path}: unknown asset {asset!r}; known: {', '.join(known_assets())}")
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: {asset}: expected a mapping of settings")
        defaults = defaults_of(asset)
        for key, value in settings.items():
            if key not in defaults:
                raise ConfigError(f"{path}: {asset}.{key}: unknown setting; known: {', '.join(sorted(defaults))}")
            default = defaults[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{path}: {asset}.{key}: expected true or false, got {value!r}")
            elif isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"{path}: {asset}.{key}: expected a number, got {value!r}")
            elif isinstance(default, tuple | list) and not isinstance(value, list):
                raise ConfigError(f"{path}: {asset}.{key}: expected a list, got {value!r}")
        out[asset] = dict(settings)
    return out


@dataclass(frozen=True)
class Settings:
    """The user's settings over the defaults, and the version of every asset they imply."""

    user: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, config_file: Path) -> Settings:
        return cls(user=load_user_config(config_file))

    def of(self, asset: str) -> dict[str, Any]:
        return {**defaults_of(asset), **self.user.get(asset, {})}

    def version(self, asset: str, fingerprint: str = "") -> str:
        """`<revision>-<hash>` of the output-changing settings (and the model's weights fingerprint):
        the asset's code_version and its store folder."""
        relevant = {k: v for k, v in self.of(asset).items() if k not in VERSIONLESS_KEYS.get(asset, set())}
        blob = json.dumps(relevant, sort_keys=True, default=list) + fingerprint
        return f"{ALGORITHM_REVISION[asset]}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


@lru_cache(maxsize=1)
def current_settings() -> Settings:
    """The settings of this process (the code location reads them when it loads)."""
    return Settings.load(Paths.from_env().config_file)
