"""Configuration: validated YAML, key paths in errors, environment overrides, secrets never in files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_no_file_gives_the_embedded_defaults():
    config = load_config(None, env={})
    assert config == AgentConfig()
    assert config.model.name == "toy"
    assert config.mqtt.prefix == "flexselect"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path, tmp_path):
    """Secret files the examples name (/run/secrets/...) are stood up with dummy secrets."""
    text = path.read_text()
    for secret in sorted(set(re.findall(r"/run/secrets/[\w.-]+", text))):
        stand_in = tmp_path / Path(secret).name
        stand_in.write_text("rtsp://user:pw@cam/1" if secret.endswith("-uri") else "secret")
        text = text.replace(secret, str(stand_in))
    load_config(write(tmp_path, text), env={})


def test_an_unknown_key_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.temperature: Extra inputs are not permitted"):
        load_config(write(tmp_path, "model:\n  temperature: 0.3\n"), env={})


def test_a_bad_value_names_its_key_path(tmp_path):
    text = "streams:\n  - id: cam1\n    uri: rtsp://cam/1\n    source:\n      sample_fps: -1\n"
    with pytest.raises(ConfigError, match=r"streams\.0\.source\.sample_fps: Input should be greater than 0"):
        load_config(write(tmp_path, text), env={})


def test_the_lite_scorer_of_the_toy_model_needs_no_selector_named(tmp_path):
    config = load_config(write(tmp_path, "model:\n  scorer: lite\n"), env={})
    assert (config.model.name, config.model.scorer, config.model.selector) == ("toy", "lite", None)


def test_the_lite_scorer_of_another_model_takes_its_selector_directory(tmp_path):
    text = "model:\n  name: /models/qwen\n  scorer: lite\n  selector: /selectors/qwen\n"
    config = load_config(write(tmp_path, text), env={})
    assert (config.model.scorer, config.model.selector) == ("lite", "/selectors/qwen")


def test_the_lite_scorer_of_another_model_without_a_selector_is_refused_with_its_key_path(tmp_path):
    text = "model:\n  name: /models/qwen\n  scorer: lite\n"
    with pytest.raises(
        ConfigError,
        match=r"model\.selector: Value error, model\.scorer 'lite' with model '/models/qwen' needs a "
        r"selector trained for it",
    ):
        load_config(write(tmp_path, text), env={})


@pytest.mark.parametrize("scorer", ["reference", "none"])
def test_a_selector_without_the_lite_scorer_is_refused_with_its_key_path(tmp_path, scorer):
    text = f"model:\n  scorer: {scorer}\n  selector: toy\n"
    with pytest.raises(
        ConfigError,
        match=rf"model\.selector: Value error, a selector is only used with model\.scorer 'lite' "
        rf"\(model\.scorer is '{scorer}'\)",
    ):
        load_config(write(tmp_path, text), env={})


def test_environment_overrides_nested_keys_and_list_items(tmp_path):
    text = "streams:\n  - id: cam1\n    uri: rtsp://cam/1\n"
    env = {"FLEXSELECT__MQTT__PORT": "1884", "FLEXSELECT__STREAMS__0__SOURCE__SAMPLE_FPS": "2.5"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.mqtt.port == 1884
    assert config.streams[0].source.sample_fps == 2.5


def test_a_password_written_in_the_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.password: secrets may not be written in config files"):
        load_config(write(tmp_path, "mqtt:\n  password: hunter2\n"), env={})


def test_secrets_come_from_secret_files(tmp_path):
    secret = tmp_path / "mqtt.secret"
    secret.write_text("s3cret\n")
    camera = tmp_path / "cam.secret"
    camera.write_text("rtsp://admin:pw@cam/1")
    text = f"mqtt:\n  username: agent\n  password_file: {secret}\n"
    text += f"streams:\n  - id: cam1\n    uri_file: {camera}\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert config.streams[0].uri == "rtsp://admin:pw@cam/1"


def test_secrets_come_from_the_environment():
    config = load_config(
        None, env={"FLEXSELECT__MQTT__USERNAME": "agent", "FLEXSELECT__MQTT__PASSWORD": "12345"}
    )
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "12345"


def test_error_lines_never_show_a_secret():
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"FLEXSELECT__MQTT__PASSWORD": "hunter2"})
    assert "hunter2" not in str(info.value)


def test_a_missing_secret_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: cannot read secret file"):
        load_config(write(tmp_path, f"mqtt:\n  password_file: {tmp_path / 'nope'}\n"), env={})


def test_duplicate_stream_ids_are_rejected(tmp_path):
    text = "streams:\n  - id: cam\n    uri: a.mp4\n  - id: cam\n    uri: b.mp4\n"
    with pytest.raises(ConfigError, match="stream ids must be unique; repeated: cam"):
        load_config(write(tmp_path, text), env={})


def test_a_watch_on_an_unknown_stream_is_rejected(tmp_path):
    text = "streams:\n  - id: cam\n    uri: a.mp4\n"
    text += "watches:\n  - id: w\n    question: any red?\n    streams: [door]\n"
    with pytest.raises(ConfigError, match="watch 'w' names unknown streams: door"):
        load_config(write(tmp_path, text), env={})


def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="must hold a mapping at the top level, got list"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})
