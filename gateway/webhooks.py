"""Webhooks: a tenant's endpoints, the deliveries owed to them, and the dispatcher that makes
them, signed and retried.

* **Owed once.** When a job reaches ``done`` or ``failed``, the job store records, in the same
  transaction as the state change, one delivery per subscribed webhook of the job's tenant
  (:func:`enqueue`; unique per webhook and event). So a delivery cannot be lost between the
  state change and the send, and a redelivered event owes nothing twice.
* **Signed.** Each POST carries ``MixPilot-Signature: t=<unix time>,v1=<hex>``, where the hex is
  HMAC-SHA256 over ``"<t>.<body>"`` with the webhook's secret (shown once, at creation).
  :func:`verify` is the receiver's check, with a tolerance on ``t`` against replays.
* **Retried.** A delivery that fails (no answer within the timeout, or any status but 2xx) is
  retried with exponential backoff (``MIXPILOT_WEBHOOK_BACKOFF_S``, doubling, at most an hour)
  up to ``MIXPILOT_WEBHOOK_MAX_ATTEMPTS`` tries, then marked ``failed``. Every try's outcome is
  in the tenant's delivery log (``GET /v1/webhooks/{id}/deliveries``).
* **Only public targets** unless ``MIXPILOT_WEBHOOK_ALLOW_PRIVATE``: an endpoint whose host
  resolves to a loopback, private, link-local or reserved address is refused when it is
  registered and again at each delivery (the name may resolve elsewhere later), so tenants
  cannot make the gateway call into its own network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from services.common.errors import InvalidParameterError, NotFoundError

log = logging.getLogger(__name__)

metadata = sa.MetaData()

EVENT_TYPES = ("job.done", "job.failed", "batch.done")

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("events_json", sa.Text, nullable=False),
    sa.Column("description", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(32), primary_key=True),
    sa.Column("webhook_id", sa.String(32), nullable=False, index=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("event_key", sa.String(160), nullable=False),
    sa.Column("payload_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending|delivered|failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("webhook_id", "event_key", name="uq_delivery_per_event"),
)


# -- signatures -------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``MixPilot-Signature`` header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """A receiver's check of ``MixPilot-Signature``: the HMAC matches and ``t`` is within
    ``tolerance_s`` of now (an old delivery replayed later fails)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# -- targets ----------------------------------------------------------------------------------


def check_target(url: str, *, allow_private: bool) -> str:
    """``url`` if it is an http(s) URL whose host resolves only to public addresses (any
    address with ``allow_private``); InvalidParameterError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameterError("url must be an http:// or https:// URL with a host")
    if len(url) > 2048:
        raise InvalidParameterError("url is longer than 2048 characters")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidParameterError(f"url host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidParameterError(
                f"url host {parts.hostname!r} resolves to a non-public address ({address})"
            )
    return url


# -- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    tenant: str
    url: str
    events: list[str]
    description: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "url": self.url,
            "events": self.events,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }


def _webhook(row: Any) -> Webhook:
    return Webhook(
        row["webhook_id"],
        row["tenant"],
        row["url"],
        json.loads(row["events_json"]),
        row["description"],
        row["created_at"],
    )


def enqueue(
    conn: sa.Connection, tenant: str, event_type: str, event_key: str, data: dict[str, Any]
) -> int:
    """Owe ``event_type`` to each of ``tenant``'s webhooks that subscribed to it, inside the
    caller's transaction; an event owed before is not owed again. Returns how many."""
    rows = conn.execute(webhooks.select().where(webhooks.c.tenant == tenant)).mappings().all()
    now = datetime.now(UTC)
    owed = 0
    for hook in map(_webhook, rows):
        if event_type not in hook.events:
            continue
        exists = conn.execute(
            sa.select(deliveries.c.delivery_id).where(
                deliveries.c.webhook_id == hook.webhook_id, deliveries.c.event_key == event_key
            )
        ).first()
        if exists is not None:
            continue
        delivery_id = secrets.token_hex(12)
        payload = {
            "id": delivery_id,
            "type": event_type,
            "created_at": now.isoformat(),
            "data": data,
        }
        conn.execute(
            deliveries.insert().values(
                delivery_id=delivery_id,
                webhook_id=hook.webhook_id,
                tenant=tenant,
                event_type=event_type,
                event_key=event_key,
                payload_json=json.dumps(payload),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        owed += 1
    return owed


class WebhookStore:
    """A tenant's webhooks and their delivery log."""

    def __init__(self, engine: sa.Engine, *, allow_private: bool) -> None:
        self.engine = engine
        self.allow_private = allow_private
        metadata.create_all(engine)

    def create(
        self, tenant: str, url: str, events: list[str], description: str = ""
    ) -> tuple[Webhook, str]:
        """Register an endpoint; returns it and its signing secret (shown only now)."""
        check_target(url, allow_private=self.allow_private)
        unknown = sorted(set(events) - set(EVENT_TYPES))
        if unknown or not events:
            raise InvalidParameterError(
                f"events must be a non-empty list of {', '.join(EVENT_TYPES)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        hook = Webhook(
            secrets.token_hex(8),
            tenant,
            url,
            sorted(set(events)),
            description[:256],
            datetime.now(UTC),
        )
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                webhooks.insert().values(
                    webhook_id=hook.webhook_id,
                    tenant=tenant,
                    url=url,
                    secret=secret,
                    events_json=json.dumps(hook.events),
                    description=hook.description,
                    created_at=hook.created_at,
                )
            )
        return hook, secret

    def get(self, tenant: str, webhook_id: str) -> Webhook:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    webhooks.select().where(
                        webhooks.c.webhook_id == webhook_id, webhooks.c.tenant == tenant
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return _webhook(row)

    def of_tenant(self, tenant: str) -> list[Webhook]:
        q = webhooks.select().where(webhooks.c.tenant == tenant).order_by(webhooks.c.created_at)
        with self.engine.connect() as conn:
            return [_webhook(r) for r in conn.execute(q).mappings()]

    def delete(self, tenant: str, webhook_id: str) -> None:
        self.get(tenant, webhook_id)
        with self.engine.begin() as conn:
            conn.execute(deliveries.delete().where(deliveries.c.webhook_id == webhook_id))
            conn.execute(webhooks.delete().where(webhooks.c.webhook_id == webhook_id))

    def deliveries(self, tenant: str, webhook_id: str, limit: int = 50) -> list[dict[str, Any]]:
        self.get(tenant, webhook_id)
        q = (
            deliveries.select()
            .where(deliveries.c.webhook_id == webhook_id)
            .order_by(deliveries.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            {
                "delivery_id": r["delivery_id"],
                "event_type": r["event_type"],
                "job_id": json.loads(r["payload_json"])["data"].get("job_id"),
                "status": r["status"],
                "attempts": r["attempts"],
                "last_status_code": r["last_status_code"],
                "last_error": r["last_error"],
                "created_at": r["created_at"].isoformat(),
                "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None,
            }
            for r in rows
        ]


# -- the dispatcher ---------------------------------------------------------------------------


class Dispatcher:
    """Sends the deliveries that are due, in a daemon thread of the gateway process. Several
    gateway replicas may run one each: a delivery is leased (its next try moved past the
    timeout) in the transaction that picks it, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
    two replicas never send the same try."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        max_attempts: int,
        backoff_s: float,
        timeout_s: float,
        allow_private: bool,
        poll_s: float = 0.5,
    ) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._lock = threading.Lock()  # SQLite: one picker at a time in this process

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while not self._stop.is_set():
                try:
                    sent = self.send_due(client)
                except Exception:  # noqa: BLE001 - a database hiccup must not stop the loop
                    log.exception("webhook dispatch failed; retrying")
                    sent = 0
                if not sent:
                    self._stop.wait(self.poll_s)

    def _lease(self, limit: int = 10) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        lease_until = now + timedelta(seconds=self.timeout_s + 30)
        q = (
            sa.select(deliveries, webhooks.c.url, webhooks.c.secret)
            .join(webhooks, webhooks.c.webhook_id == deliveries.c.webhook_id)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True, of=deliveries)
        with self._lock, self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
            for r in rows:
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.delivery_id == r["delivery_id"])
                    .values(next_attempt_at=lease_until)
                )
        return rows

    def send_due(self, client: httpx.Client) -> int:
        """Send every delivery that is due now; returns how many were tried."""
        rows = self._lease()
        for row in rows:
            self._send(client, row)
        return len(rows)

    def _send(self, client: httpx.Client, row: dict[str, Any]) -> None:
        body = row["payload_json"].encode()
        attempt = int(row["attempts"]) + 1
        status_code: int | None = None
        error: str | None = None
        try:
            check_target(row["url"], allow_private=self.allow_private)
            response = client.post(
                row["url"],
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "MixPilot-Webhooks/1",
                    "MixPilot-Event": row["event_type"],
                    "MixPilot-Delivery": row["delivery_id"],
                    "MixPilot-Signature": sign(row["secret"], body, int(time.time())),
                },
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (httpx.HTTPError, InvalidParameterError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "attempts": attempt,
            "last_status_code": status_code,
            "last_error": error,
        }
        if error is None:
            values.update(status="delivered", delivered_at=now)
        elif attempt >= self.max_attempts:
            values.update(status="failed")
        else:
            delay = min(3600.0, self.backoff_s * 2 ** (attempt - 1))
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.delivery_id == row["delivery_id"])
                .values(**values)
            )
        log.info(
            "webhook delivery",
            extra={
                "delivery_id": row["delivery_id"],
                "attempt": attempt,
                "status": values.get("status", "pending"),
                "reason": error,
            },
        )
