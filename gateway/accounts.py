"""Tenants and their API keys, in the gateway's database (the job store's engine).

A key is ``mpk_<key id>_<secret>``: 12 hex characters that name the key and 43 URL-safe
characters of secret (256 random bits). Only the secret's SHA-256 is stored; the whole key is
shown once, when it is created (``mixpilot keys create --tenant T``). A slow password hash adds
nothing for a secret of 256 random bits, and SHA-256 keeps each request's check cheap.
Verification compares digests in constant time; a revoked key never authenticates again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.plans import DEFAULT_PLAN, Plan, plan_named
from services.common.errors import InvalidParameterError, NotFoundError

metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("plan", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(12), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

KEY_PATTERN = re.compile(r"^mpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_tenant_name(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise InvalidParameterError(
            f"tenant {tenant!r}: use 1-64 lowercase letters, digits, '.', '_' or '-'"
        )
    return tenant


class Accounts:
    """Tenants and API keys on ``engine`` (creates its tables)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def ensure_tenant(self, tenant: str, plan: str = DEFAULT_PLAN) -> None:
        check_tenant_name(tenant)
        plan_named(plan)
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(tenants.c.tenant).where(tenants.c.tenant == tenant)
            ).first()
            if exists is None:
                conn.execute(
                    tenants.insert().values(tenant=tenant, plan=plan, created_at=datetime.now(UTC))
                )

    def set_plan(self, tenant: str, plan: str) -> None:
        plan_named(plan)
        self.ensure_tenant(tenant, plan)
        with self.engine.begin() as conn:
            conn.execute(tenants.update().where(tenants.c.tenant == tenant).values(plan=plan))

    def plan_of(self, tenant: str) -> Plan:
        with self.engine.connect() as conn:
            name = conn.execute(
                sa.select(tenants.c.plan).where(tenants.c.tenant == tenant)
            ).scalar_one_or_none()
        return plan_named(name or DEFAULT_PLAN)

    def tenants(self) -> list[tuple[str, str]]:
        """(tenant, plan) of every tenant, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tenants.c.tenant, tenants.c.plan).order_by(tenants.c.tenant)
            )
            return [(str(t), str(p)) for t, p in rows]

    def create_key(
        self, tenant: str, *, label: str = "", plan: str = DEFAULT_PLAN
    ) -> tuple[str, KeyInfo]:
        """A new key for ``tenant`` (created on ``plan`` if new): the full key, shown only now,
        and its record."""
        self.ensure_tenant(tenant, plan)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    tenant=tenant,
                    secret_sha256=_digest(secret),
                    label=label[:128],
                    created_at=now,
                )
            )
        return f"mpk_{key_id}_{secret}", KeyInfo(key_id, tenant, label[:128], now, None)

    def revoke(self, key_id: str) -> KeyInfo:
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(api_keys.select().where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise NotFoundError(f"no API key {key_id}")
        return _info(row._mapping)

    def keys(self, tenant: str | None = None) -> list[KeyInfo]:
        q = api_keys.select().order_by(api_keys.c.created_at)
        if tenant is not None:
            q = q.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [_info(r) for r in conn.execute(q).mappings()]

    def tenant_for(self, key: str) -> tuple[str, Plan] | None:
        """The tenant of a valid, unrevoked key and its plan; None for anything else."""
        match = KEY_PATTERN.match(key)
        if match is None:
            return None
        key_id, secret = match.groups()
        query = (
            sa.select(
                api_keys.c.tenant, api_keys.c.secret_sha256, api_keys.c.revoked_at, tenants.c.plan
            )
            .join(tenants, tenants.c.tenant == api_keys.c.tenant, isouter=True)
            .where(api_keys.c.key_id == key_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
            return None
        return str(row.tenant), plan_named(row.plan or DEFAULT_PLAN)


def _info(row: sa.RowMapping) -> KeyInfo:
    return KeyInfo(row["key_id"], row["tenant"], row["label"], row["created_at"], row["revoked_at"])
