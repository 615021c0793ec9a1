"""Settings dataclasses are built from one asset's mapping in medialens.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def known_fields(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `params` that are fields of the dataclass `cls`. Unknown keys are left out
    here because config.py has already refused the ones no asset knows."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in params.items() if k in names}
