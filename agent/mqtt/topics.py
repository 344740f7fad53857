"""The agent's MQTT topic tree: every topic lives under one prefix, so one ACL rule confines the agent."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.mqtt.errors import TopicError

DEFAULT_PREFIX = "flexselect"
# Same shape as the memory's stream ids (kept separate so this package depends on nothing of the agent).
STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# A client's level in `<prefix>/ask/<client>` and `<prefix>/answer/<client>/...`: what an ACL's %u or %c
# substitutes, so a broker can confine each user to its own request topic and answer subtree.
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
MAX_REPLY_TOPIC_CHARS = 1024
COMMANDS = ("ask", "watch/add", "watch/remove")
# First levels under the prefix that the agent uses itself; no stream may take these names.
RESERVED_LEVELS = frozenset({"available", "ask", "answer", "watch", "watches", "errors", "cluster"})
MAX_TOPIC_BYTES = 65_535


def check_topic(topic: str, *, what: str = "topic") -> str:
    """Return `topic` if it is a valid MQTT publish topic (no wildcards, no NUL, not empty, <= 64 KiB).

    Raises:
        TopicError: naming the bad value.
    """
    if not isinstance(topic, str) or not topic:
        raise TopicError(f"{what} must be a non-empty string, got {topic!r}")
    if "+" in topic or "#" in topic:
        raise TopicError(f"{what} {topic!r} contains a wildcard ('+' or '#'); publish topics cannot")
    if "\x00" in topic:
        raise TopicError(f"{what} {topic!r} contains a NUL character")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise TopicError(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")
    return topic


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it is a usable topic prefix: a publish topic with no empty level and no `$` start.

    Raises:
        TopicError: naming the bad value and the rule it breaks.
    """
    check_topic(prefix, what="prefix")
    if prefix.startswith("/") or prefix.endswith("/"):
        raise TopicError(f"prefix {prefix!r} must not start or end with '/'")
    if "" in prefix.split("/"):
        raise TopicError(f"prefix {prefix!r} has an empty level ('//')")
    if prefix.startswith("$"):
        raise TopicError(f"prefix {prefix!r} must not start with '$' (reserved for broker topics)")
    return prefix


def check_stream_name(stream: str) -> str:
    """Return `stream` if it can be one topic level: `[A-Za-z0-9][A-Za-z0-9._@-]{0,127}`, not reserved.

    Raises:
        TopicError: naming the bad value.
    """
    if not isinstance(stream, str) or not STREAM_NAME.match(stream):
        raise TopicError(f"stream name {stream!r} must match {STREAM_NAME.pattern}")
    if stream in RESERVED_LEVELS:
        raise TopicError(f"stream name {stream!r} is reserved for agent topics: {sorted(RESERVED_LEVELS)}")
    return stream


def check_client(client: str) -> str:
    """Return `client` if it can be the client level of a request or answer topic.

    Raises:
        TopicError: naming the bad value.
    """
    if not isinstance(client, str) or not CLIENT_NAME.match(client):
        raise TopicError(f"client name {client!r} must match {CLIENT_NAME.pattern}")
    return client


@dataclass(frozen=True, slots=True)
class Topics:
    """All topics of one agent, derived from its prefix (validated on construction).

    Attributes:
        prefix: the topic prefix, e.g. `flexselect`.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def available(self) -> str:
        """Retained `online` / `offline` (the will) / `stopped`."""
        return f"{self.prefix}/available"

    @property
    def ask(self) -> str:
        """Questions in, as `AskRequest` JSON, from a trusted client (replies anywhere below `answer/`)."""
        return f"{self.prefix}/ask"

    def ask_from(self, client: str) -> str:
        """Questions in from `client`: their replies are confined to `answer_of(client)`."""
        return f"{self.ask}/{check_client(client)}"

    def answer_of(self, client: str) -> str:
        """The answer subtree of `client` (an ACL grants it `read <prefix>/answer/%u/#`)."""
        return f"{self.answer_root}/{check_client(client)}"

    def shared(self, group: str, topic_filter: str) -> str:
        """An MQTT v5 shared subscription of `topic_filter`: each message goes to one member of `group`."""
        return f"$share/{group}/{topic_filter}"

    @property
    def cluster_status(self) -> str:
        """Retained `ClusterStatus` JSON: who owns which stream (clustered agents)."""
        return f"{self.prefix}/cluster/status"

    @property
    def cluster_stream_add(self) -> str:
        """Add or replace a stream of the cluster (a stream section as JSON)."""
        return f"{self.prefix}/cluster/streams/add"

    @property
    def cluster_stream_remove(self) -> str:
        """Remove a stream from the cluster (`{"id": ...}`)."""
        return f"{self.prefix}/cluster/streams/remove"

    @property
    def answer_root(self) -> str:
        """The subtree every reply goes to (`reply_to` and v5 response topics must lie below it)."""
        return f"{self.prefix}/answer"

    def answer(self, request_id: str) -> str:
        """The default reply topic of the request `request_id`."""
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            raise TopicError(f"request id {request_id!r} must match {REQUEST_ID.pattern}")
        return f"{self.answer_root}/{request_id}"

    @property
    def errors(self) -> str:
        """Error replies to requests whose id and reply topic could not be read."""
        return f"{self.prefix}/errors"

    def status(self, stream: str) -> str:
        """Retained `StreamStatus` JSON of one stream."""
        return f"{self.prefix}/{check_stream_name(stream)}/status"

    def events(self, stream: str) -> str:
        """`WatchEvent` JSON of one stream (not retained)."""
        return f"{self.prefix}/{check_stream_name(stream)}/events"

    @property
    def watch_add(self) -> str:
        """Add or replace a standing question (`WatchSpec` JSON)."""
        return f"{self.prefix}/watch/add"

    @property
    def watch_remove(self) -> str:
        """Remove a standing question (`{"id": ...}`)."""
        return f"{self.prefix}/watch/remove"

    @property
    def watches(self) -> str:
        """Retained `WatchList` JSON: every active standing question."""
        return f"{self.prefix}/watches"

    @property
    def commands(self) -> tuple[str, ...]:
        """The topic filters the agent subscribes to: each command, shared and per client."""
        return tuple(f"{self.prefix}/{c}{tail}" for c in COMMANDS for tail in ("", "/+"))

    def command_of(self, topic: str) -> tuple[str, str | None] | None:
        """`(command, client)` of a request topic, e.g. `("ask", "kitchen-panel")`; None if it is none.

        `command` is one of `ask`, `watch/add`, `watch/remove`; `client` is None on the shared topic.
        """
        if not topic.startswith(self.prefix + "/"):
            return None
        rest = topic[len(self.prefix) + 1 :]
        for command in COMMANDS:
            if rest == command:
                return command, None
            if rest.startswith(command + "/"):
                client = rest[len(command) + 1 :]
                return (command, client) if CLIENT_NAME.match(client) else None
        return None

    def client_of(self, topic: str | None) -> str | None:
        """The client named by a per-client request topic, else None."""
        found = self.command_of(topic) if topic else None
        return found[1] if found else None

    @property
    def ask_filters(self) -> tuple[str, ...]:
        """The filters questions arrive on (taken from `commands`, the one place that names them)."""
        return tuple(f for f in self.commands if f == self.ask or f.startswith(self.ask + "/"))

    def cluster_commands(self, group: str | None = None) -> tuple[str, ...]:
        """What a clustered agent subscribes to: every command plainly, plus the cluster's stream commands.

        Questions are not a shared subscription (`group` is unused): every agent gets each question and
        one claims it in Redis, so none is lost with an agent killed mid-delivery (agent/cluster/journal.py).
        """
        return (*self.commands, self.cluster_stream_add, self.cluster_stream_remove)

    def is_under_prefix(self, topic: str) -> bool:
        """Whether `topic` is a publish topic strictly below the prefix (`<prefix>/...`)."""
        try:
            check_topic(topic)
        except TopicError:
            return False
        return topic.startswith(self.prefix + "/") and len(topic) > len(self.prefix) + 1

    def is_reply_topic(self, topic: str, client: str | None = None) -> bool:
        """Whether `topic` may take replies: a publish topic of at most 1,024 characters with no empty level,
        below `<prefix>/answer/<client>/` for a client's request, else below `<prefix>/answer/`."""
        if not isinstance(topic, str) or len(topic) > MAX_REPLY_TOPIC_CHARS:
            return False
        root = self.answer_root if client is None else f"{self.answer_root}/{client}"
        if not self.is_under_prefix(topic) or not topic.startswith(root + "/"):
            return False
        return "" not in topic[len(root) + 1 :].split("/")

    def reply_target(
        self,
        *,
        request_id: str | None,
        reply_to: str | None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        client: str | None = None,
    ) -> tuple[str, bytes | None]:
        """Where a reply goes: `reply_to`, else the v5 response topic, else `answer/<id>`, else `errors`.

        For a client's request (`ask/<client>`), every reply stays below `answer/<client>/`: the default
        is `answer/<client>/<id>`, and `answer/<client>/errors` when the id could not be read.
        `reply_to` and the response topic are honoured only when `is_reply_topic` accepts them; the
        correlation data is passed along whichever topic is chosen.

        Returns:
            (topic, correlation_data)
        """
        for candidate in (reply_to, response_topic):
            if candidate is not None and self.is_reply_topic(candidate, client):
                return candidate, correlation_data
        root = self.answer_root if client is None else self.answer_of(client)
        if request_id is not None and REQUEST_ID.match(request_id):
            return f"{root}/{request_id}", correlation_data
        return (self.errors if client is None else f"{root}/errors"), correlation_data
