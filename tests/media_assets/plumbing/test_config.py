from pathlib import Path

import pytest

from media_assets.plumbing.config import ConfigError, Paths, Settings, load_user_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "medialens.yaml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = Settings.load(tmp_path / "absent.yaml")
    assert s.of("keyframes")["max_gap_s"] == 4.0
    assert s.version("keyframes").startswith("2-")  # revision 2: shot changes per frame interval


def test_a_changed_parameter_changes_only_that_version(tmp_path: Path) -> None:
    base = Settings.load(tmp_path / "absent.yaml")
    changed = Settings.load(write(tmp_path, "keyframes: {max_gap_s: 2}\n"))
    assert changed.of("keyframes")["max_gap_s"] == 2
    assert changed.version("keyframes") != base.version("keyframes")
    assert changed.version("audio_track") == base.version("audio_track")


def test_ingest_limits_do_not_change_outputs_so_not_the_version(tmp_path: Path) -> None:
    base = Settings.load(tmp_path / "absent.yaml")
    changed = Settings.load(write(tmp_path, "media_file: {max_size_mb: 10}\n"))
    assert changed.of("media_file")["max_size_mb"] == 10
    assert changed.version("media_file") == base.version("media_file")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ocr_txt: {}\n", "unknown asset 'ocr_txt'"),
        ("keyframes: {max_gapp: 3}\n", "keyframes.max_gapp: unknown setting"),
        ("keyframes: {max_gap_s: soon}\n", "expected a number"),
        ("keyframes: [1, 2]\n", "expected a mapping"),
        ("- a\n- b\n", "expected a mapping"),
        ("keyframes: {max_gap_s: [\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_user_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_paths_follow_the_environment(tmp_path: Path) -> None:
    p = Paths.from_env({"MEDIALENS_HOME": str(tmp_path)})
    assert p.inbox == tmp_path / "inbox" and p.store == tmp_path / "store"
    assert p.config_file == tmp_path / "medialens.yaml"
    q = Paths.from_env({"MEDIALENS_HOME": str(tmp_path), "MEDIALENS_INBOX": str(tmp_path / "drop")})
    assert q.inbox == tmp_path / "drop"
