"""Node settings: defaults < TOML file < ISOROLL_* environment < flags."""
from __future__ import annotations

import pytest

from sequencer.node.config import NodeConfig, describe, load_config


def write_toml(tmp_path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source():
    config = load_config(None, env={}, flags={})
    assert config == NodeConfig()
    assert config.transactional_id == "isoroll-isoroll.blocks-sequencer-0"


def test_file_then_environment_then_flags(tmp_path):
    path = write_toml(tmp_path, """
mode = "follower"
api_port = 9000
[kafka]
bootstrap_servers = "k1:9092"
commit_timeout_s = 2.5
[snapshot]
interval_blocks = 10
""")
    config = load_config(path, env={}, flags={})
    assert (config.mode, config.api_port, config.kafka_bootstrap_servers) == ("follower", 9000, "k1:9092")
    assert config.kafka_commit_timeout_s == 2.5 and config.snapshot_interval_blocks == 10

    env = {"ISOROLL_API_PORT": "9100", "ISOROLL_KAFKA_BOOTSTRAP_SERVERS": "k2:9092",
           "ISOROLL_VERIFY_SIGNATURES_ON_REPLAY": "false"}
    config = load_config(path, env=env, flags={})
    assert (config.api_port, config.kafka_bootstrap_servers) == (9100, "k2:9092")
    assert config.verify_signatures_on_replay is False
    assert config.mode == "follower"  # from the file, untouched by env

    config = load_config(path, env=env, flags={"api_port": 9200, "mode": None})
    assert config.api_port == 9200 and config.mode == "follower"  # an unset flag (None) does not override


def test_unknown_settings_and_bad_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown setting.*api_prot"):
        load_config(write_toml(tmp_path, "api_prot = 1\n"), env={}, flags={})
    with pytest.raises(ValueError, match="true or false"):
        load_config(None, env={"ISOROLL_VERIFY_SIGNATURES_ON_REPLAY": "maybe"}, flags={})
    with pytest.raises(ValueError):
        load_config(None, env={"ISOROLL_API_PORT": "eighty"}, flags={})


def test_describe_lists_every_setting_with_its_variable():
    text = describe()
    for name in NodeConfig.__dataclass_fields__:
        assert f"ISOROLL_{name.upper()}" in text
