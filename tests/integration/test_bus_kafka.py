"""KafkaBus against a real Kafka-protocol broker (Tansu, from the ``kafka_bootstrap`` fixture).

The broker is shared by the session, so every test uses fresh topic and group names. A new
consumer group takes several seconds to join; every wait below is a deadline, not a sleep.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka.admin import KafkaAdminClient

from services.common.bus import BusError, Consumer, KafkaBus, Message, Producer
from tests.infra import free_port

# Group joins on a fresh broker take ~5 s; leave room for a slow CI machine.
DEADLINE_S = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def poll_until(
    consumer: Consumer,
    done: Callable[[list[Message]], bool],
    *,
    timeout_s: float = DEADLINE_S,
) -> list[Message]:
    """Poll ``consumer`` until ``done(received)`` holds; fail with what arrived at the deadline."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while not done(received):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(
                f"after {timeout_s:.0f}s got only {[(m.partition, m.offset) for m in received]}"
            )
        received.extend(consumer.poll(min(1.0, remaining)))
    return received


def count_at_least(n: int) -> Callable[[list[Message]], bool]:
    return lambda received: len(received) >= n


@pytest.fixture
def bus(kafka_bootstrap: str) -> KafkaBus:
    return KafkaBus(kafka_bootstrap, client_id="mixpilot-tests", max_poll_records=50)


@pytest.fixture
def producer(bus: KafkaBus) -> Iterator[Producer]:
    p = bus.producer()
    yield p
    p.close()


@pytest.fixture
def topic_name(bus: KafkaBus) -> str:
    name = unique("test.bus")
    bus.ensure_topics([name])
    return name


def send_values(producer: Producer, topic: str, values: list[bytes]) -> None:
    for value in values:
        producer.send(topic, key="job-1", value=value)


def test_round_trip_keeps_key_value_and_headers(
    bus: KafkaBus, producer: Producer, topic_name: str
) -> None:
    producer.send(
        topic_name,
        key="job-42",
        value=b"\x00\x01payload\xff",
        headers={"content-type": "application/x-protobuf", "attempt": "2", "émoji": "✓"},
    )
    producer.send(topic_name, key=None, value=b"")

    consumer = bus.consumer([topic_name], group_id=unique("g"))
    try:
        first, second = poll_until(consumer, count_at_least(2))
    finally:
        consumer.close()

    assert first == Message(
        topic=topic_name,
        partition=0,
        offset=0,
        key="job-42",
        value=b"\x00\x01payload\xff",
        headers={"content-type": "application/x-protobuf", "attempt": "2", "émoji": "✓"},
    )
    assert (second.offset, second.key, second.value, second.headers) == (1, None, b"", {})


def test_uncommitted_messages_are_redelivered_to_the_next_group_member(
    bus: KafkaBus, producer: Producer, topic_name: str
) -> None:
    group = unique("g")
    send_values(producer, topic_name, [b"m0", b"m1", b"m2"])

    first = bus.consumer([topic_name], group_id=group)
    try:
        received = poll_until(first, count_at_least(3))
        assert [m.value for m in received] == [b"m0", b"m1", b"m2"]
        first.commit(received[0])  # m1 and m2 are processed but never committed
    finally:
        first.close()

    second = bus.consumer([topic_name], group_id=group)
    try:
        again = poll_until(second, count_at_least(2))
        # Delivery restarts at the committed offset: m0 (committed) never comes back.
        assert [(m.offset, m.value) for m in again[:2]] == [(1, b"m1"), (2, b"m2")]
        for message in again:
            second.commit(message)
    finally:
        second.close()

    third = bus.consumer([topic_name], group_id=group)
    try:
        producer.send(topic_name, key="job-1", value=b"m3")
        after = poll_until(third, count_at_least(1))
        assert [(m.offset, m.value) for m in after] == [(3, b"m3")]
    finally:
        third.close()


def test_a_second_group_reads_everything_independently(
    bus: KafkaBus, producer: Producer, topic_name: str
) -> None:
    values = [f"v{i}".encode() for i in range(5)]
    send_values(producer, topic_name, values)

    for group in (unique("analyzers"), unique("auditors")):
        consumer = bus.consumer([topic_name], group_id=group)
        try:
            received = poll_until(consumer, count_at_least(len(values)))
            assert [m.value for m in received] == values
            consumer.commit(received[-1])
        finally:
            consumer.close()


def test_ensure_topics_is_idempotent_and_keys_keep_their_partition(
    bus: KafkaBus, producer: Producer, kafka_bootstrap: str
) -> None:
    name = unique("test.bus.partitioned")
    bus.ensure_topics([name, name], partitions=3)
    bus.ensure_topics([name], partitions=3)
    bus.ensure_topics([name], partitions=5)  # existing topics are left unchanged

    admin = KafkaAdminClient(bootstrap_servers=[kafka_bootstrap], client_id="mixpilot-tests")
    try:
        (described,) = admin.describe_topics([name])
    finally:
        admin.close()
    assert described["error_code"] == 0
    assert len(described["partitions"]) == 3

    keys = [f"job-{i}" for i in range(12)]
    for round_ in range(2):
        for key in keys:
            producer.send(name, key=key, value=f"{key}/{round_}".encode())

    consumer = bus.consumer([name], group_id=unique("g"))
    try:
        received = poll_until(consumer, count_at_least(2 * len(keys)))
    finally:
        consumer.close()
    partitions_by_key: dict[str | None, set[int]] = {}
    for message in received:
        partitions_by_key.setdefault(message.key, set()).add(message.partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert len({m.partition for m in received}) > 1
    # Within a key, order is kept.
    for key in keys:
        assert [m.value for m in received if m.key == key] == [
            f"{key}/0".encode(),
            f"{key}/1".encode(),
        ]


def test_unreachable_broker_raises_bus_error() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(BusError) as excinfo:
        bus.producer()
    assert excinfo.value.code == "bus_unavailable"
    assert excinfo.value.retriable


def test_members_of_one_group_share_the_partitions(bus: KafkaBus, producer: Producer) -> None:
    """Two members of one group (two pods) each own one of two partitions: subscribe, not assign.

    Each member polls on its own thread, as pods do: a group join completes only once every
    member has rejoined, so members polled in turn from one thread would stall each other.
    """
    name = unique("test.bus.shared")
    bus.ensure_topics([name], partitions=2)
    group = unique("renderers")
    received: list[list[Message]] = [[], []]
    stop = threading.Event()
    failures: list[BaseException] = []

    def member(inbox: list[Message]) -> None:
        consumer = bus.consumer([name], group_id=group)
        try:
            while not stop.is_set():
                for message in consumer.poll(0.5):
                    inbox.append(message)
                    consumer.commit(message)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            consumer.close()

    threads = [threading.Thread(target=member, args=(inbox,), daemon=True) for inbox in received]
    for thread in threads:
        thread.start()
    try:
        # Keep producing to both partitions until both members have been given work.
        deadline = time.monotonic() + 2 * DEADLINE_S
        sent = 0
        while not (all(received) or failures):
            if time.monotonic() > deadline:
                pytest.fail(f"partitions not shared: got {[len(r) for r in received]} messages")
            for key in ("job-a", "job-b", "job-c", "job-d"):
                producer.send(name, key=key, value=f"{sent}".encode())
                sent += 1
            time.sleep(0.2)  # pacing the producer, not synchronisation: the loop waits on data
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=DEADLINE_S)
    assert not failures, failures
    owned = [{m.partition for m in inbox} for inbox in received]
    assert owned[0] and owned[1]
