import hashlib

import pytest

from media_assets.plumbing.partitions import (
    KEY_PATTERN,
    is_valid_key,
    key_for_existing_content,
    partition_key_for,
)

SHA = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("talk.mp4", "talk"),
        ("my talk (final).mp4", "my_talk_final"),
        ("über café.jpg", "uber_cafe"),
        ("..weird..name...png", "weird_name"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.MOV", "clip"),
        ("日本語.mp3", "media"),
        (".hidden", "hidden"),
        ("archive.tar.gz", "archive_tar"),
        ("-_-.wav", "media"),
    ],
)
def test_key_is_readable_stem_plus_hash(name: str, stem: str) -> None:
    key = partition_key_for(name, SHA)
    assert key == f"{stem}-{SHA[:10]}"
    assert KEY_PATTERN.match(key)


def test_key_is_at_most_64_chars_and_keeps_the_hash() -> None:
    key = partition_key_for("a" * 300 + ".mp4", SHA)
    assert len(key) == 64
    assert key.endswith(SHA[:10])
    assert is_valid_key(key)


def test_same_bytes_under_another_name_find_the_existing_partition() -> None:
    existing = [
        partition_key_for("first.mp4", SHA),
        partition_key_for("other.mp4", hashlib.sha256(b"y").hexdigest()),
    ]
    assert key_for_existing_content(SHA, existing) == existing[0]
    assert key_for_existing_content(hashlib.sha256(b"z").hexdigest(), existing) is None


def test_rejects_a_non_hash() -> None:
    with pytest.raises(ValueError):
        partition_key_for("a.mp4", "not-a-hash")


def test_invalid_keys() -> None:
    assert not is_valid_key("../x")
    assert not is_valid_key("a" * 65)
    assert not is_valid_key("")
