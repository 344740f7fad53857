"""Topics live under one prefix; the config validates prefixes, secrets and TLS pairs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.mqtt import MqttConfig, TlsConfig, TopicError, Topics


def test_every_topic_lives_under_the_prefix():
    topics = Topics("site/agent1")
    produced = [
        topics.available,
        topics.ask,
        topics.answer("q-1"),
        topics.errors,
        topics.status("cam1"),
        topics.events("cam1"),
        topics.watch_add,
        topics.watch_remove,
        topics.watches,
        *(f.replace("+", "panel") for f in topics.commands),  # subscription filters
    ]
    assert all(topics.is_under_prefix(topic) for topic in produced)
    assert topics.status("cam1") == "site/agent1/cam1/status"
    assert topics.events("cam1") == "site/agent1/cam1/events"
    assert topics.answer("q-1") == "site/agent1/answer/q-1"


@pytest.mark.parametrize("topic", ["site/agent1", "site/agent10/ask", "other/ask", "site/agent1/+/x", ""])
def test_is_under_prefix_rejects_outside_and_wildcard_topics(topic):
    assert not Topics("site/agent1").is_under_prefix(topic)


@pytest.mark.parametrize("prefix", ["", "/a", "a/", "a//b", "a/+", "a/#", "$SYS", "a\x00b"])
def test_bad_prefixes_are_refused_by_topics_and_config(prefix):
    with pytest.raises(TopicError):
        Topics(prefix)
    with pytest.raises(ValidationError):
        MqttConfig(prefix=prefix)


@pytest.mark.parametrize("stream", ["ask", "answer", "a/b", "a+", "", "-x", "x" * 129])
def test_stream_names_must_be_one_unreserved_level(stream):
    with pytest.raises(TopicError):
        Topics().status(stream)


def test_reply_topics_must_lie_below_the_answer_subtree():
    topics = Topics("fx")
    assert topics.is_reply_topic("fx/answer/me/1")
    for bad in (
        "fx/answer",
        "fx/answer/",
        "fx/answer//x",
        "fx/ask",
        "fx/cam1/events",
        "gx/answer/1",
        "fx/answer/#",
    ):
        assert not topics.is_reply_topic(bad), bad


def test_reply_target_order_is_reply_to_then_response_topic_then_answer_id_then_errors():
    topics = Topics("fx")
    both = {"response_topic": "fx/answer/v5", "correlation_data": b"c"}
    assert topics.reply_target(request_id="1", reply_to="fx/answer/mine", **both) == ("fx/answer/mine", b"c")
    assert topics.reply_target(request_id="1", reply_to=None, **both) == ("fx/answer/v5", b"c")
    outside = {"response_topic": "elsewhere/x", "correlation_data": b"c"}
    assert topics.reply_target(request_id="1", reply_to="fx/cam1/events", **outside) == ("fx/answer/1", b"c")
    assert topics.reply_target(request_id=None, reply_to=None) == ("fx/errors", None)


def test_config_defaults_and_cross_field_rules(tmp_path):
    config = MqttConfig()
    assert (config.host, config.port, config.prefix, config.protocol) == (
        "127.0.0.1",
        1883,
        "flexselect",
        "auto",
    )
    with pytest.raises(ValidationError, match="password is set without username"):
        MqttConfig(password="x")
    with pytest.raises(ValidationError, match=r"key_file is set without tls\.cert_file"):
        TlsConfig(key_file=tmp_path / "k.pem")
    with pytest.raises(ValidationError, match="cap_s"):
        MqttConfig(backoff={"base_s": 5, "cap_s": 1})
    with pytest.raises(ValidationError, match="Extra inputs"):
        MqttConfig(hostname="x")
    assert "s3cret" not in repr(MqttConfig(username="u", password="s3cret"))
