"""InMemoryBus: the delivery semantics of the Kafka adapter, in one process."""

from __future__ import annotations

import threading
import time

import pytest

from services.common import bus as busmod
from services.common.bus import BusError, InMemoryBus, Message
from services.common.errors import MixPilotError

DEADLINE_S = 10.0


def poll_n(consumer: busmod.Consumer, n: int, *, timeout_s: float = DEADLINE_S) -> list[Message]:
    """Poll until ``n`` messages arrived; fail at the deadline."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"got {len(received)} of {n} messages in {timeout_s}s")
        received.extend(consumer.poll(remaining))
    return received


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus(max_poll_records=100)


def test_topic_names() -> None:
    assert busmod.topic("submitted") == "mixpilot.jobs.submitted"
    assert [
        busmod.SUBMITTED,
        busmod.ANALYZED,
        busmod.PREDICTED,
        busmod.RENDERED,
        busmod.EVENTS,
        busmod.DLQ,
    ] == [
        "mixpilot.jobs.submitted",
        "mixpilot.jobs.analyzed",
        "mixpilot.jobs.predicted",
        "mixpilot.jobs.rendered",
        "mixpilot.jobs.events",
        "mixpilot.jobs.dlq",
    ]
    with pytest.raises(ValueError):
        busmod.topic("bad name")
    with pytest.raises(ValueError):
        busmod.topic("")


def test_bus_error_is_a_retriable_unavailable_error() -> None:
    error = BusError("broker   down\n now")
    assert isinstance(error, MixPilotError)
    assert (error.code, error.retriable, error.grpc_status, error.http_status) == (
        "bus_unavailable",
        True,
        "UNAVAILABLE",
        503,
    )
    assert error.message == "broker down now"


def test_round_trip_keeps_key_value_and_headers(bus: InMemoryBus) -> None:
    producer = bus.producer()
    producer.send("t", key="job-1", value=b"\x00payload", headers={"attempt": "1", "é": "✓"})
    producer.send("t", key=None, value=b"")
    consumer = bus.consumer(["t"], group_id="g")

    first, second = poll_n(consumer, 2)

    assert first == Message("t", 0, 0, "job-1", b"\x00payload", {"attempt": "1", "é": "✓"})
    assert second == Message("t", 0, 1, None, b"", {})
    assert hash(first) == hash(Message("t", 0, 0, "job-1", b"\x00payload", {}))


def test_send_rejects_wrong_types(bus: InMemoryBus) -> None:
    producer = bus.producer()
    with pytest.raises(TypeError):
        producer.send("t", key="k", value="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        producer.send("t", key=b"k", value=b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        producer.send("t", key="k", value=b"v", headers={"n": 1})  # type: ignore[dict-item]


def test_uncommitted_messages_are_redelivered_to_the_next_group_member(bus: InMemoryBus) -> None:
    producer = bus.producer()
    for value in (b"m0", b"m1", b"m2"):
        producer.send("t", key="job", value=value)

    first = bus.consumer(["t"], group_id="g")
    received = poll_n(first, 3)
    first.commit(received[0])
    first.close()
    assert bus.committed("g", "t") == 1

    second = bus.consumer(["t"], group_id="g")
    again = poll_n(second, 2)
    assert [(m.offset, m.value) for m in again] == [(1, b"m1"), (2, b"m2")]
    for message in again:
        second.commit(message)
    second.close()

    third = bus.consumer(["t"], group_id="g")
    assert third.poll(0.05) == []
    producer.send("t", key="job", value=b"m3")
    assert [(m.offset, m.value) for m in poll_n(third, 1)] == [(3, b"m3")]


def test_a_second_group_reads_everything_independently(bus: InMemoryBus) -> None:
    producer = bus.producer()
    values = [f"v{i}".encode() for i in range(5)]
    for value in values:
        producer.send("t", key="job", value=value)

    a = bus.consumer(["t"], group_id="analyzers")
    assert [m.value for m in poll_n(a, 5)] == values
    a.commit(Message("t", 0, 4, "job", b"v4", {}))
    b = bus.consumer(["t"], group_id="auditors")
    assert [m.value for m in poll_n(b, 5)] == values
    assert bus.committed("analyzers", "t") == 5
    assert bus.committed("auditors", "t") is None


def test_consumer_starts_at_the_committed_offset_not_at_its_own_position(bus: InMemoryBus) -> None:
    producer = bus.producer()
    for i in range(3):
        producer.send("t", key=None, value=bytes([i]))
    reader = bus.consumer(["t"], group_id="g")
    reader.commit(poll_n(reader, 3)[1])  # commit offset 2, skipping one uncommitted message
    reader.close()
    assert [m.offset for m in poll_n(bus.consumer(["t"], group_id="g"), 1)] == [2]


def test_ensure_topics_is_idempotent_and_keys_keep_their_partition(bus: InMemoryBus) -> None:
    bus.ensure_topics(["p", "p"], partitions=3)
    bus.ensure_topics(["p"], partitions=3)
    bus.ensure_topics(["p"], partitions=5)  # existing topics are left unchanged
    assert bus.partitions("p") == 3
    assert bus.partitions("missing") == 0

    producer = bus.producer()
    keys = [f"job-{i}" for i in range(12)]
    for round_ in range(2):
        for key in keys:
            producer.send("p", key=key, value=f"{key}/{round_}".encode())
    received = poll_n(bus.consumer(["p"], group_id="g"), 2 * len(keys))

    partitions_by_key: dict[str | None, set[int]] = {}
    for message in received:
        partitions_by_key.setdefault(message.key, set()).add(message.partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert len({m.partition for m in received}) > 1
    for key in keys:
        assert [m.value for m in received if m.key == key] == [
            f"{key}/0".encode(),
            f"{key}/1".encode(),
        ]


def test_members_of_one_group_share_partitions_and_take_over_on_leave(bus: InMemoryBus) -> None:
    bus.ensure_topics(["p"], partitions=2)
    producer = bus.producer()
    a = bus.consumer(["p"], group_id="g")
    b = bus.consumer(["p"], group_id="g")
    for i in range(20):
        producer.send("p", key=f"job-{i}", value=b"x")

    got_a = a.poll(0.1)
    got_b = b.poll(0.1)
    assert got_a and got_b
    assert {m.partition for m in got_a}.isdisjoint({m.partition for m in got_b})
    assert len(got_a) + len(got_b) == 20
    for message in got_a:
        a.commit(message)
    # Like Kafka's CommitFailedError: a member cannot commit a partition it does not own.
    with pytest.raises(BusError):
        a.commit(got_b[0])

    # b leaves without committing: a takes over b's partition from its committed offset (0).
    b.close()
    redelivered = poll_n(a, len(got_b))
    assert [(m.partition, m.offset) for m in redelivered] == [
        (m.partition, m.offset) for m in got_b
    ]


def test_poll_waits_up_to_its_timeout_when_idle(bus: InMemoryBus) -> None:
    consumer = bus.consumer(["t"], group_id="g")
    start = time.monotonic()
    assert consumer.poll(0.2) == []
    elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 2.0
    assert consumer.poll(0) == []
    with pytest.raises(ValueError):
        consumer.poll(-1)


def test_poll_wakes_up_when_a_message_arrives(bus: InMemoryBus) -> None:
    consumer = bus.consumer(["t"], group_id="g")
    sender = threading.Timer(0.1, lambda: bus.producer().send("t", key="k", value=b"late"))
    start = time.monotonic()
    sender.start()
    try:
        messages = consumer.poll(DEADLINE_S)
    finally:
        sender.join()
    assert [m.value for m in messages] == [b"late"]
    assert time.monotonic() - start < DEADLINE_S / 2


def test_max_poll_records_bounds_one_poll() -> None:
    bus = InMemoryBus()  # default: one message per poll, as for the Kafka adapter
    producer = bus.producer()
    for i in range(3):
        producer.send("t", key=None, value=bytes([i]))
    consumer = bus.consumer(["t"], group_id="g")
    assert [len(consumer.poll(0)) for _ in range(4)] == [1, 1, 1, 0]


def test_closed_clients_refuse_work_and_close_is_idempotent(bus: InMemoryBus) -> None:
    producer = bus.producer()
    consumer = bus.consumer(["t"], group_id="g")
    producer.close()
    producer.close()
    consumer.close()
    consumer.close()
    with pytest.raises(RuntimeError):
        producer.send("t", key=None, value=b"")
    with pytest.raises(RuntimeError):
        consumer.poll(0)


def test_concurrent_producers_and_a_consumer_thread(bus: InMemoryBus) -> None:
    """Four producer threads and one consumer thread: every message once, per-key order kept."""
    n_threads, per_thread = 4, 250
    consumer = bus.consumer(["t"], group_id="g")
    received: list[Message] = []
    done = threading.Event()

    def consume() -> None:
        deadline = time.monotonic() + DEADLINE_S
        while len(received) < n_threads * per_thread and time.monotonic() < deadline:
            for message in consumer.poll(0.5):
                received.append(message)
                consumer.commit(message)
        done.set()

    def produce(thread_index: int) -> None:
        producer = bus.producer()
        for i in range(per_thread):
            producer.send("t", key=f"job-{thread_index}", value=f"{thread_index}:{i}".encode())

    reader = threading.Thread(target=consume)
    writers = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(DEADLINE_S)
    assert done.wait(DEADLINE_S)
    reader.join(DEADLINE_S)

    assert len(received) == n_threads * per_thread
    assert [m.offset for m in received] == list(range(n_threads * per_thread))
    for t in range(n_threads):
        values = [m.value for m in received if m.key == f"job-{t}"]
        assert values == [f"{t}:{i}".encode() for i in range(per_thread)]
    assert bus.committed("g", "t") == n_threads * per_thread
