"""Preference capture: which version a listener chose in an A/B comparison and which parameters
they edited, per tenant: the data a later preference-learning feature trains on.

A record names the job, the versions compared, the one chosen, and the edited parameters (by
name, in physical units, checked against the parameter schema). Records stay when their job is
deleted: they hold no audio, and they are the tenant's learning data.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from services.common.errors import InvalidParameterError
from services.common.params import validate_params

metadata = sa.MetaData()

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("preference_id", sa.String(24), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("chosen", sa.String(64), nullable=False),
    sa.Column("compared_json", sa.Text, nullable=False),
    sa.Column("edited_json", sa.Text, nullable=False),
    sa.Column("listener", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def _public(row: Any) -> dict[str, Any]:
    return {
        "preference_id": row["preference_id"],
        "job_id": row["job_id"],
        "chosen": row["chosen"],
        "compared": json.loads(row["compared_json"]),
        "edited": json.loads(row["edited_json"]),
        "listener": row["listener"],
        "created_at": row["created_at"].isoformat(),
    }


class PreferenceStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def record(
        self,
        tenant: str,
        job_id: str,
        versions: set[str],
        *,
        chosen: str,
        compared: list[str],
        edited: dict[str, float | str],
        listener: str = "",
    ) -> dict[str, Any]:
        """Store one choice; ``versions`` are the job's, which ``chosen`` and ``compared`` must
        name (``chosen`` among ``compared``)."""
        compared = list(dict.fromkeys(compared or [chosen]))
        unknown = sorted({chosen, *compared} - versions)
        if unknown:
            have = ", ".join(sorted(versions)) or "none yet"
            raise InvalidParameterError(
                f"job {job_id} has no version {', '.join(unknown)} (it has {have})"
            )
        if chosen not in compared:
            raise InvalidParameterError("chosen must be one of the compared versions")
        physical = validate_params(edited, fill_defaults=False)
        row = {
            "preference_id": secrets.token_hex(12),
            "tenant": tenant,
            "job_id": job_id,
            "chosen": chosen,
            "compared_json": json.dumps(compared),
            "edited_json": json.dumps(physical),
            "listener": listener[:128],
            "created_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            conn.execute(preferences.insert().values(**row))
        return _public(row)

    def query(
        self, tenant: str, *, job_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        q = preferences.select().where(preferences.c.tenant == tenant)
        if job_id:
            q = q.where(preferences.c.job_id == job_id)
        q = q.order_by(preferences.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_public(r) for r in conn.execute(q).mappings()]

    def summary(self, tenant: str) -> dict[str, Any]:
        """How often each version was compared and chosen, its win rate, and how often each
        parameter was edited."""
        q = sa.select(
            preferences.c.chosen, preferences.c.compared_json, preferences.c.edited_json
        ).where(preferences.c.tenant == tenant)
        chosen: Counter[str] = Counter()
        compared: Counter[str] = Counter()
        edited: Counter[str] = Counter()
        total = 0
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                total += 1
                chosen[row.chosen] += 1
                compared.update(json.loads(row.compared_json))
                edited.update(json.loads(row.edited_json).keys())
        return {
            "choices": total,
            "versions": {
                v: {"compared": n, "chosen": chosen[v], "win_rate": round(chosen[v] / n, 4)}
                for v, n in sorted(compared.items())
            },
            "edited_parameters": dict(edited.most_common()),
        }
