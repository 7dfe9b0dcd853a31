"""The message bus port and its two adapters.

Stages talk to each other through topics named ``mixpilot.jobs.<stage>``. Workers depend only on
the :class:`Bus`, :class:`Producer` and :class:`Consumer` protocols defined here; two adapters
implement them:

- :class:`KafkaBus` -- Apache Kafka (any Kafka-protocol broker) through kafka-python, for the
  distributed deployment. Consumers join a consumer group (``subscribe``), so several pods share
  the partitions of a topic.
- :class:`InMemoryBus` -- a thread-safe, single-process bus for ``mixpilot serve`` and for tests,
  with the same delivery semantics: append-only partitions, per-group committed offsets, one owner
  per partition inside a group, redelivery of uncommitted messages after a consumer leaves.

Delivery is at-least-once. A worker polls, processes, sends its output (``Producer.send`` returns
only once the broker acknowledged it), and only then commits its input
(``Consumer.commit(message)``). A message that was polled but not committed is delivered again to
the next consumer of the same group.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.common.errors import MixPilotError

__all__ = [
    "ANALYZED",
    "DLQ",
    "EVENTS",
    "PREDICTED",
    "RENDERED",
    "SUBMITTED",
    "TOPIC_PREFIX",
    "Bus",
    "BusError",
    "Consumer",
    "InMemoryBus",
    "KafkaBus",
    "Message",
    "Producer",
    "topic",
]

TOPIC_PREFIX = "mixpilot.jobs."


def topic(name: str) -> str:
    """Return the full topic name of a job stage.

    Parameters
    ----------
    name : str
        Short name of the stage topic, e.g. ``"submitted"``.

    Returns
    -------
    str
        ``"mixpilot.jobs." + name``, e.g. ``"mixpilot.jobs.submitted"``.

    Raises
    ------
    ValueError
        If ``name`` is empty or contains characters Kafka does not allow in topic names.
    """
    if not name or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name):
        raise ValueError(f"invalid topic name {name!r}: use ASCII letters, digits, '.', '_', '-'")
    return TOPIC_PREFIX + name


SUBMITTED = topic("submitted")
ANALYZED = topic("analyzed")
PREDICTED = topic("predicted")
RENDERED = topic("rendered")
EVENTS = topic("events")
DLQ = topic("dlq")


class BusError(MixPilotError):
    """The message bus cannot be reached, or refused an operation; worth retrying."""

    code = "bus_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    retriable = True


@dataclass(frozen=True)
class Message:
    """One message read from (or written to) a topic partition.

    Attributes
    ----------
    topic : str
        Full topic name.
    partition : int
        Partition index inside the topic.
    offset : int
        Offset of the message inside its partition.
    key : str or None
        Message key (the job id in MixPilot); decoded as UTF-8, undecodable bytes replaced.
    value : bytes
        Raw payload (a serialised protobuf message in MixPilot).
    headers : dict of str to str
        Message headers, values decoded as UTF-8.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict, hash=False)


class Producer(Protocol):
    """Sends messages; each ``send`` blocks until the broker acknowledged the message."""

    def send(
        self,
        topic: str,
        *,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send one message and wait for the acknowledgement of all in-sync replicas.

        Parameters
        ----------
        topic : str
            Full topic name.
        key : str or None
            Partitioning key; messages with the same key keep their order.
        value : bytes
            Payload.
        headers : mapping of str to str, optional
            Message headers.

        Raises
        ------
        BusError
            If the message was not acknowledged.
        """
        ...

    def close(self) -> None:
        """Flush and release the producer. Idempotent."""
        ...


class Consumer(Protocol):
    """Reads messages of its group's partitions; not shared between threads."""

    def poll(self, timeout_s: float) -> list[Message]:
        """Return the next messages, waiting up to ``timeout_s`` seconds for some to arrive.

        Parameters
        ----------
        timeout_s : float
            Longest time to wait when nothing is available, in seconds.

        Returns
        -------
        list of Message
            Possibly empty; in offset order within each partition.
        """
        ...

    def commit(self, message: Message) -> None:
        """Commit offset ``message.offset + 1`` of that message's partition, synchronously.

        Raises
        ------
        BusError
            If the commit failed (the broker is unreachable, or the partition was reassigned to
            another consumer of the group); the message will then be delivered again.
        """
        ...

    def close(self) -> None:
        """Leave the group without committing anything. Idempotent."""
        ...


class Bus(Protocol):
    """Creates producers and consumers, and the topics they use."""

    def producer(self) -> Producer:
        """Return a new producer."""
        ...

    def consumer(self, topics: Sequence[str], *, group_id: str) -> Consumer:
        """Return a new consumer subscribed to ``topics`` as a member of ``group_id``."""
        ...

    def ensure_topics(self, topics: Sequence[str], *, partitions: int = 1) -> None:
        """Create the topics that do not exist yet; existing topics are left unchanged."""
        ...


def _check_send_args(
    topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None
) -> dict[str, str]:
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"topic must be a non-empty str, got {topic!r}")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be str or None, got {type(key).__name__}")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"value must be bytes, got {type(value).__name__}")
    out: dict[str, str] = {}
    for name, text in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(f"headers must map str to str, got {name!r}: {text!r}")
        out[name] = text
    return out


# --------------------------------------------------------------------------------------------
# Kafka adapter
# --------------------------------------------------------------------------------------------


def _kafka() -> Any:
    """Import kafka-python lazily, so the in-memory bus works without it."""
    try:
        import kafka
        import kafka.admin
        import kafka.errors
    except ImportError as exc:  # pragma: no cover - kafka-python is a declared dependency
        raise BusError(f"kafka-python is not installed: {exc}") from exc
    return kafka


class KafkaBus:
    """A :class:`Bus` on Apache Kafka (or any Kafka-protocol broker), through kafka-python.

    Parameters
    ----------
    bootstrap : str
        Comma-separated ``host:port`` list of brokers, e.g. ``"kafka:9092"``.
    client_id : str, default "mixpilot"
        Client id reported to the brokers (logs, quotas).
    session_timeout_ms : int, default 10000
        A consumer that sends no heartbeat for this long is removed from its group and its
        partitions are reassigned.
    max_poll_interval_ms : int, default 600000
        Longest time allowed between two ``poll`` calls of a consumer before it is considered
        stuck and removed from its group; it bounds the processing time of one poll's messages.
    max_poll_records : int, default 1
        Most messages one ``poll`` returns. One suits jobs that take seconds to minutes each;
        raise it for cheap messages (events).
    timeout_s : float, default 30.0
        Time allowed to reach the cluster, for a request, and for a send to be acknowledged.

    Notes
    -----
    Producers are thread-safe; a consumer must stay on one thread. Consumers commit only
    explicitly (``enable_auto_commit=False``) and a new group starts at the earliest offset.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "mixpilot",
        session_timeout_ms: int = 10000,
        max_poll_interval_ms: int = 600000,
        max_poll_records: int = 1,
        timeout_s: float = 30.0,
    ) -> None:
        if not bootstrap or not bootstrap.strip():
            raise ValueError("bootstrap must name at least one broker as host:port")
        if session_timeout_ms <= 0 or max_poll_interval_ms <= 0:
            raise ValueError("session_timeout_ms and max_poll_interval_ms must be positive")
        if max_poll_records < 1:
            raise ValueError(f"max_poll_records must be >= 1, got {max_poll_records}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.max_poll_records = max_poll_records
        self.timeout_s = timeout_s

    @property
    def _servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    def producer(self) -> KafkaProducerAdapter:
        """Return a new producer (``acks="all"``, idempotent, retrying until ``timeout_s``).

        Raises
        ------
        BusError
            If no broker can be reached within ``timeout_s``.
        """
        kafka = _kafka()
        timeout_ms = int(self.timeout_s * 1000)
        try:
            raw = kafka.KafkaProducer(
                bootstrap_servers=self._servers,
                client_id=self.client_id,
                acks="all",
                retries=2**31 - 1,
                request_timeout_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except kafka.errors.KafkaError as exc:
            raise BusError(f"cannot create a Kafka producer for {self.bootstrap}: {exc!r}") from exc
        return KafkaProducerAdapter(raw, timeout_s=self.timeout_s)

    def consumer(self, topics: Sequence[str], *, group_id: str) -> KafkaConsumerAdapter:
        """Return a new consumer of ``topics`` in the consumer group ``group_id``.

        Raises
        ------
        BusError
            If no broker can be reached within ``timeout_s``.
        """
        topics = _check_topics(topics)
        if not group_id:
            raise ValueError("group_id must be a non-empty str")
        kafka = _kafka()
        heartbeat_ms = max(100, min(3000, self.session_timeout_ms // 3))
        try:
            raw = kafka.KafkaConsumer(
                bootstrap_servers=self._servers,
                client_id=self.client_id,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=heartbeat_ms,
                max_poll_interval_ms=self.max_poll_interval_ms,
                max_poll_records=self.max_poll_records,
                bootstrap_timeout_ms=int(self.timeout_s * 1000),
            )
        except kafka.errors.KafkaError as exc:
            raise BusError(f"cannot create a Kafka consumer for {self.bootstrap}: {exc!r}") from exc
        try:
            raw.subscribe(topics=list(topics))
        except kafka.errors.KafkaError as exc:
            raw.close(autocommit=False)
            raise BusError(f"cannot subscribe to {list(topics)}: {exc!r}") from exc
        return KafkaConsumerAdapter(raw, timeout_s=self.timeout_s)

    def ensure_topics(self, topics: Sequence[str], *, partitions: int = 1) -> None:
        """Create the missing topics with ``partitions`` partitions; idempotent.

        Existing topics are left as they are (their partition count is not changed). The
        replication factor is the broker's default.

        Raises
        ------
        BusError
            If the cluster cannot be reached or refuses to create a topic.
        """
        topics = _check_topics(topics)
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        kafka = _kafka()
        errors = kafka.errors
        timeout_ms = int(self.timeout_s * 1000)
        missing = list(dict.fromkeys(topics))
        try:
            admin = kafka.admin.KafkaAdminClient(
                bootstrap_servers=self._servers,
                client_id=self.client_id,
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except errors.KafkaError as exc:
            raise BusError(f"cannot reach Kafka at {self.bootstrap}: {exc!r}") from exc
        try:
            existing = set(admin.list_topics())
            missing = [t for t in missing if t not in existing]
            if not missing:
                return
            response = admin.create_topics(
                {t: {"num_partitions": partitions} for t in missing},
                timeout_ms=timeout_ms,
                raise_errors=False,
            )
            for result in response["topics"]:
                code = result["error_code"]
                if code in (0, errors.TopicAlreadyExistsError.errno):
                    continue
                raise BusError(
                    f"cannot create topic {result['name']!r}: "
                    f"{errors.for_code(code).__name__} {result.get('error_message') or ''}"
                )
            admin.wait_for_topics(missing, timeout_ms=timeout_ms)
        except errors.KafkaError as exc:
            raise BusError(f"cannot create topics {missing}: {exc!r}") from exc
        finally:
            admin.close()


class KafkaProducerAdapter:
    """:class:`Producer` over a ``kafka.KafkaProducer``; made by :meth:`KafkaBus.producer`."""

    def __init__(self, raw: Any, *, timeout_s: float) -> None:
        self._raw = raw
        self._timeout_s = timeout_s
        self._closed = False

    def send(
        self,
        topic: str,
        *,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send one message; return once acknowledged by all in-sync replicas.

        Raises
        ------
        BusError
            If the message was not acknowledged within the bus timeout.
        """
        clean = _check_send_args(topic, key, value, headers)
        if self._closed:
            raise RuntimeError("send() on a closed producer")
        errors = _kafka().errors
        try:
            future = self._raw.send(
                topic,
                key=None if key is None else key.encode("utf-8"),
                value=bytes(value),
                headers=[(name, text.encode("utf-8")) for name, text in clean.items()],
            )
            # delivery_timeout_ms bounds the future; the margin covers the sender thread.
            future.get(timeout=self._timeout_s + 5.0)
        except errors.KafkaError as exc:
            raise BusError(f"message to {topic!r} was not acknowledged: {exc!r}") from exc

    def close(self) -> None:
        """Flush pending messages and close the producer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._raw.close(timeout=self._timeout_s)


class KafkaConsumerAdapter:
    """:class:`Consumer` over a ``kafka.KafkaConsumer``; made by :meth:`KafkaBus.consumer`."""

    def __init__(self, raw: Any, *, timeout_s: float) -> None:
        self._raw = raw
        self._timeout_s = timeout_s
        self._closed = False

    def poll(self, timeout_s: float) -> list[Message]:
        """Return the next messages, waiting up to ``timeout_s`` seconds.

        The first polls of a new consumer also join the group; on a fresh group that takes a few
        seconds, during which ``poll`` returns empty lists.

        Raises
        ------
        BusError
            If the broker reports an error the client cannot recover from.
        """
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        if self._closed:
            raise RuntimeError("poll() on a closed consumer")
        errors = _kafka().errors
        try:
            batches = self._raw.poll(timeout_ms=int(timeout_s * 1000))
        except errors.KafkaError as exc:
            raise BusError(f"poll failed: {exc!r}") from exc
        messages: list[Message] = []
        for records in batches.values():
            for record in records:
                messages.append(
                    Message(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=None
                        if record.key is None
                        else bytes(record.key).decode("utf-8", errors="replace"),
                        value=b"" if record.value is None else bytes(record.value),
                        headers={
                            name: (b"" if raw is None else bytes(raw)).decode(
                                "utf-8", errors="replace"
                            )
                            for name, raw in (record.headers or [])
                        },
                    )
                )
        return messages

    def commit(self, message: Message) -> None:
        """Commit offset ``message.offset + 1`` for the message's partition, synchronously.

        Raises
        ------
        BusError
            If the commit failed; the message will then be delivered again.
        """
        if self._closed:
            raise RuntimeError("commit() on a closed consumer")
        kafka = _kafka()
        partition = kafka.TopicPartition(message.topic, message.partition)
        offsets = {partition: kafka.OffsetAndMetadata(message.offset + 1, "", -1)}
        try:
            self._raw.commit(offsets=offsets, timeout_ms=int(self._timeout_s * 1000))
        except kafka.errors.KafkaError as exc:
            raise BusError(
                f"commit of {message.topic}[{message.partition}]@{message.offset} failed: {exc!r}"
            ) from exc

    def close(self) -> None:
        """Leave the group without committing anything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._raw.close(autocommit=False, timeout_ms=int(self._timeout_s * 1000))


def _check_topics(topics: Sequence[str]) -> list[str]:
    if isinstance(topics, str):
        raise TypeError("topics must be a sequence of topic names, not one str")
    names = list(topics)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise ValueError(f"topics must be non-empty names, got {names!r}")
    return names


# --------------------------------------------------------------------------------------------
# In-memory adapter
# --------------------------------------------------------------------------------------------


class _Group:
    """State of one consumer group: members in join order, assignment, committed offsets."""

    def __init__(self) -> None:
        self.members: list[InMemoryConsumer] = []
        self.committed: dict[tuple[str, int], int] = {}


class InMemoryBus:
    """A thread-safe, single-process :class:`Bus` with Kafka's delivery semantics.

    Topics are lists of append-only partitions; a topic is created with one partition on first
    use, or with more by :meth:`ensure_topics`. A keyed message goes to partition
    ``crc32(key) % partitions`` (so one key keeps its order); unkeyed messages go round-robin.

    Inside a consumer group each partition has one owner at a time: partitions are dealt
    round-robin to the group's members in join order and re-dealt whenever a member joins or
    leaves. A member that gains a partition starts at the group's committed offset (the earliest
    offset if nothing was committed), so messages polled but not committed by a member that left
    are delivered again. ``poll`` blocks up to its timeout waiting for new messages.

    Parameters
    ----------
    max_poll_records : int, default 1
        Most messages one ``poll`` returns, as for :class:`KafkaBus`.
    """

    def __init__(self, *, max_poll_records: int = 1) -> None:
        if max_poll_records < 1:
            raise ValueError(f"max_poll_records must be >= 1, got {max_poll_records}")
        self.max_poll_records = max_poll_records
        self._cond = threading.Condition(threading.RLock())
        self._topics: dict[str, list[list[Message]]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin: dict[str, int] = {}

    # -- Bus ----------------------------------------------------------------------------------

    def producer(self) -> InMemoryProducer:
        """Return a new producer; ``send`` appends and returns at once."""
        return InMemoryProducer(self)

    def consumer(self, topics: Sequence[str], *, group_id: str) -> InMemoryConsumer:
        """Return a new consumer of ``topics`` that joins the group ``group_id``."""
        names = _check_topics(topics)
        if not group_id:
            raise ValueError("group_id must be a non-empty str")
        consumer = InMemoryConsumer(self, names, group_id)
        with self._cond:
            for name in names:
                self._create(name, 1)
            group = self._groups.setdefault(group_id, _Group())
            group.members.append(consumer)
            self._rebalance(group)
        return consumer

    def ensure_topics(self, topics: Sequence[str], *, partitions: int = 1) -> None:
        """Create the missing topics with ``partitions`` partitions; existing ones are kept."""
        names = _check_topics(topics)
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        with self._cond:
            created = [self._create(name, partitions) for name in names]
            if any(created):
                for group in self._groups.values():
                    self._rebalance(group)
                self._cond.notify_all()

    # -- inspection (tests, the `serve` status page) ------------------------------------------

    def partitions(self, topic: str) -> int:
        """Return the number of partitions of ``topic`` (0 if it does not exist)."""
        with self._cond:
            return len(self._topics.get(topic, []))

    def committed(self, group_id: str, topic: str, partition: int = 0) -> int | None:
        """Return the group's committed offset for a partition, or None if nothing committed."""
        with self._cond:
            group = self._groups.get(group_id)
            return None if group is None else group.committed.get((topic, partition))

    # -- internals (called with the lock held) ------------------------------------------------

    def _create(self, name: str, partitions: int) -> bool:
        if name in self._topics:
            return False
        self._topics[name] = [[] for _ in range(partitions)]
        return True

    def _rebalance(self, group: _Group) -> None:
        owners: dict[tuple[str, int], InMemoryConsumer] = {}
        wanted = sorted({name for member in group.members for name in member.topics})
        for name in wanted:
            subscribers = [m for m in group.members if name in m.topics]
            for index in range(len(self._topics.get(name, []))):
                owners[(name, index)] = subscribers[index % len(subscribers)]
        for member in group.members:
            kept = {tp: pos for tp, pos in member.positions.items() if owners.get(tp) is member}
            gained = [tp for tp, owner in owners.items() if owner is member and tp not in kept]
            for tp in gained:
                kept[tp] = group.committed.get(tp, 0)
            member.positions = kept
        self._cond.notify_all()

    def _append(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> Message:
        with self._cond:
            if self._create(topic, 1):
                for group in self._groups.values():
                    self._rebalance(group)
            parts = self._topics[topic]
            if key is not None:
                index = zlib.crc32(key.encode("utf-8")) % len(parts)
            else:
                index = self._round_robin.get(topic, 0) % len(parts)
                self._round_robin[topic] = index + 1
            message = Message(
                topic=topic,
                partition=index,
                offset=len(parts[index]),
                key=key,
                value=bytes(value),
                headers=headers,
            )
            parts[index].append(message)
            self._cond.notify_all()
            return message

    def _take(self, consumer: InMemoryConsumer) -> list[Message]:
        out: list[Message] = []
        for (name, index), position in sorted(consumer.positions.items()):
            log = self._topics[name][index]
            room = self.max_poll_records - len(out)
            if room <= 0:
                break
            batch = log[position : position + room]
            if batch:
                out.extend(batch)
                consumer.positions[(name, index)] = position + len(batch)
        return out

    def _poll(self, consumer: InMemoryConsumer, timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if consumer.closed:
                    raise RuntimeError("poll() on a closed consumer")
                messages = self._take(consumer)
                if messages:
                    return messages
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _commit(self, consumer: InMemoryConsumer, message: Message) -> None:
        with self._cond:
            if consumer.closed:
                raise RuntimeError("commit() on a closed consumer")
            tp = (message.topic, message.partition)
            if tp not in consumer.positions:
                raise BusError(
                    f"commit of {message.topic}[{message.partition}]@{message.offset} failed: "
                    "the partition is no longer assigned to this consumer"
                )
            self._groups[consumer.group_id].committed[tp] = message.offset + 1

    def _leave(self, consumer: InMemoryConsumer) -> None:
        with self._cond:
            if consumer.closed:
                return
            consumer.closed = True
            group = self._groups[consumer.group_id]
            group.members.remove(consumer)
            consumer.positions = {}
            self._rebalance(group)


class InMemoryProducer:
    """:class:`Producer` of an :class:`InMemoryBus`; made by :meth:`InMemoryBus.producer`."""

    def __init__(self, bus: InMemoryBus) -> None:
        self._bus = bus
        self._closed = False

    def send(
        self,
        topic: str,
        *,
        key: str | None,
        value: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Append one message to its topic; it is acknowledged when this returns."""
        clean = _check_send_args(topic, key, value, headers)
        if self._closed:
            raise RuntimeError("send() on a closed producer")
        self._bus._append(topic, key, bytes(value), clean)

    def close(self) -> None:
        """Close the producer. Idempotent."""
        self._closed = True


class InMemoryConsumer:
    """:class:`Consumer` of an :class:`InMemoryBus`; made by :meth:`InMemoryBus.consumer`."""

    def __init__(self, bus: InMemoryBus, topics: list[str], group_id: str) -> None:
        self._bus = bus
        self.topics = tuple(topics)
        self.group_id = group_id
        self.closed = False
        # Next offset to deliver, for each partition this consumer owns (guarded by the bus lock).
        self.positions: dict[tuple[str, int], int] = {}

    def poll(self, timeout_s: float) -> list[Message]:
        """Return the next messages of the owned partitions, waiting up to ``timeout_s``."""
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        return self._bus._poll(self, timeout_s)

    def commit(self, message: Message) -> None:
        """Commit offset ``message.offset + 1`` for the message's partition.

        Raises
        ------
        BusError
            If the partition is no longer assigned to this consumer.
        """
        self._bus._commit(self, message)

    def close(self) -> None:
        """Leave the group; uncommitted messages go to the next owner. Idempotent."""
        self._bus._leave(self)
