"""The `media` partitions: one dynamic partition per distinct file content.

A key is `<stem>-<sha256[:10]>`, limited to `[A-Za-z0-9_-]` and 64 characters, so it is readable in the
UI, safe as a file name, and the same bytes under another name map to the partition that exists.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath

from dagster import AssetKey, DynamicPartitionsDefinition, RunRequest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

MEDIA_PARTITIONS_NAME = "media"
media_partitions = DynamicPartitionsDefinition(name=MEDIA_PARTITIONS_NAME)

KEY_MAX_LEN = 64
HASH_LEN = 10
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]+")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def partition_key_for(source_name: str, sha256: str) -> str:
    """Derive the partition key of a file from its name and content hash."""
    if len(sha256) < HASH_LEN or not all(c in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    name = PurePath(source_name.replace("\\", "/")).name
    bare = name.lstrip(".")
    stem = bare.rsplit(".", 1)[0] if "." in bare else bare
    # Transliterate accents (über -> uber) before dropping what is left outside the alphabet.
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    clean = _NOT_ALLOWED.sub("_", ascii_stem).strip("_-") or "media"
    clean = clean[: KEY_MAX_LEN - HASH_LEN - 1].rstrip("_-") or "media"
    return f"{clean}-{sha256[:HASH_LEN].lower()}"


def hash_suffix(key: str) -> str:
    """The content-hash part of a partition key."""
    return key.rsplit("-", 1)[-1]


def key_for_existing_content(sha256: str, existing_keys: Iterable[str]) -> str | None:
    """The partition that already holds these bytes, if any (the hash suffix identifies content)."""
    suffix = sha256[:HASH_LEN].lower()
    for key in existing_keys:
        if hash_suffix(key) == suffix:
            return key
    return None


def range_chunks(partitions: Iterable[str], order: Sequence[str], limit: int) -> list[tuple[str, str, list[str]]]:
    """(first, last, members) of runs of at most `limit` partitions that are contiguous in `order`
    (the order partitions were added): a range run covers every partition between first and last,
    so gaps must split it. Partitions not in `order` are left out."""
    index = {p: i for i, p in enumerate(order)}
    ordered = sorted((p for p in set(partitions) if p in index), key=index.__getitem__)
    out: list[list[str]] = []
    for p in ordered:
        if out and index[p] == index[out[-1][-1]] + 1 and len(out[-1]) < limit:
            out[-1].append(p)
        else:
            out.append([p])
    return [(c[0], c[-1], c) for c in out]


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags that make a run cover first..last (Dagster 1.13 takes a range only as run tags);
    none for a single partition."""
    if first == last:
        return {}
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def partitions_run_request(
    first: str,
    last: str,
    *,
    run_key: str,
    tags: Mapping[str, str],
    asset_selection: Sequence[AssetKey] | None = None,
) -> RunRequest:
    """A sensor's run over the partitions first..last (one of `range_chunks`): a plain partition
    run when they are the same, else a range run."""
    return RunRequest(
        run_key=run_key,
        partition_key=first if first == last else None,
        asset_selection=asset_selection,
        tags={**tags, **range_tags(first, last)},
    )


def is_valid_key(key: str) -> bool:
    """Whether a string can be a media partition key (used to refuse odd CLI input early)."""
    return bool(KEY_PATTERN.match(key))
