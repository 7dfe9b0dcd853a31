"""Admission: which waiting job enters the pipeline next, fairly between tenants.

A submitted job is stored with its envelope and waits (``queued``, not admitted). The pipeline
holds at most ``MIXPILOT_ADMISSION_WINDOW`` admitted, unfinished jobs in all, and each tenant
at most its plan's ``concurrent_jobs``. Whenever a place is free, the next job comes from the
tenant with the fewest jobs in the pipeline (ties: the tenant whose oldest waiting job is
oldest), and within a tenant in submission order. So a label's 10,000-track batch fills free
places only while nobody else waits: a subscriber's single song takes the next place that
frees up, whatever the size of the batch ahead of it (the Kafka topics after admission are
FIFO, which is why the order is decided here and not there).

:meth:`Admission.pump` admits what fits. A daemon thread runs it every ``poll_s`` (places free
up as jobs finish) and at once when a submission calls :meth:`Admission.wake`, so a request
never waits for admission (done in the request, it halved the submissions per second). Every
replica may pump: on PostgreSQL one transaction-scoped advisory lock serialises them; on SQLite (one
process) a lock does. The envelope is sent to ``mixpilot.jobs.submitted`` inside the
admitting transaction: if the send fails, the job stays waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.plans import Plan
from gateway.pump import PumpThread
from gateway.store import JobStore, jobs
from services.common import bus as busmod
from services.common.jobs import TERMINAL

_ADVISORY_KEY = 0x4D495850  # "MIXP"


class Admission(PumpThread):
    def __init__(
        self,
        store: JobStore,
        producer: busmod.Producer,
        *,
        window: int,
        plan_of: Callable[[str], Plan],
        poll_s: float = 0.2,
    ) -> None:
        super().__init__("admission", poll_s=poll_s)
        self.store = store
        self.producer = producer
        self.window = window
        self.plan_of = plan_of
        self._lock = threading.Lock()

    def pump(self) -> int:
        """Admit as many waiting jobs as the window and the plans allow; how many."""
        engine = self.store.engine
        with self._lock, engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_KEY)))
            running: dict[str, int] = dict(
                conn.execute(
                    sa.select(jobs.c.tenant, sa.func.count())
                    .where(jobs.c.admitted_at.is_not(None), jobs.c.state.not_in(list(TERMINAL)))
                    .group_by(jobs.c.tenant)
                ).all()
            )
            oldest: dict[str, datetime] = dict(
                conn.execute(
                    sa.select(jobs.c.tenant, sa.func.min(jobs.c.created_at))
                    .where(
                        jobs.c.admitted_at.is_(None),
                        jobs.c.state == "queued",
                        jobs.c.envelope.is_not(None),
                    )
                    .group_by(jobs.c.tenant)
                ).all()
            )
            free = self.window - sum(running.values())
            seq = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(jobs.c.admit_seq), 0))
            ).scalar_one()
            plans = {t: self.plan_of(t) for t in oldest}
            admitted = 0
            while free > 0:
                eligible = [t for t in oldest if running.get(t, 0) < plans[t].concurrent_jobs]
                if not eligible:
                    break
                tenant = min(eligible, key=lambda t: (running.get(t, 0), oldest[t]))
                row = conn.execute(
                    sa.select(jobs.c.job_id, jobs.c.envelope)
                    .where(
                        jobs.c.tenant == tenant,
                        jobs.c.admitted_at.is_(None),
                        jobs.c.state == "queued",
                        jobs.c.envelope.is_not(None),
                    )
                    .order_by(jobs.c.created_at, jobs.c.job_id)
                    .limit(1)
                ).first()
                if row is None:
                    del oldest[tenant]
                    continue
                seq += 1
                conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == row.job_id)
                    .values(admitted_at=datetime.now(UTC), admit_seq=seq, envelope=None)
                )
                self.producer.send(busmod.SUBMITTED, key=row.job_id, value=bytes(row.envelope))
                running[tenant] = running.get(tenant, 0) + 1
                free -= 1
                admitted += 1
                next_oldest = conn.execute(
                    sa.select(sa.func.min(jobs.c.created_at)).where(
                        jobs.c.tenant == tenant,
                        jobs.c.admitted_at.is_(None),
                        jobs.c.state == "queued",
                        jobs.c.envelope.is_not(None),
                    )
                ).scalar_one()
                if next_oldest is None:
                    del oldest[tenant]
                else:
                    oldest[tenant] = next_oldest
            return admitted
