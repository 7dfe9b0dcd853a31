"""The job store: PostgreSQL in distributed mode, SQLite on one machine (SQLAlchemy Core, one
schema for both). Job state is written only by applying events; applying the same event twice
changes nothing, and a job never moves backwards or out of ``done``/``failed``."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway import webhooks
from mixpilot.v1 import mixpilot_pb2 as pb
from services.common.errors import ConflictError, InvalidParameterError, NotFoundError
from services.common.jobs import STATE_NAMES, STATE_RANK, TERMINAL

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("filename", sa.String(255), nullable=False, default=""),
    sa.Column("input_uri", sa.Text, nullable=False),
    sa.Column("input_sha256", sa.String(64), nullable=False),
    sa.Column("audio_s", sa.Float, nullable=False, default=0.0),  # metered: the upload's length
    # Admission (gateway/admission.py): the envelope waits here until the job is let into the
    # pipeline; admitted_at/admit_seq record when and in which order.
    sa.Column("envelope", sa.LargeBinary),
    sa.Column("batch_id", sa.String(32), index=True),
    sa.Column("admitted_at", sa.DateTime(timezone=True)),
    sa.Column("admit_seq", sa.Integer, index=True),
    sa.Column("options_json", sa.Text, nullable=False, default="{}"),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("error_stage", sa.String(32)),
    sa.Column("report_uri", sa.Text),
    sa.Column("outputs_json", sa.Text, nullable=False, default="{}"),
    sa.Column("timings_json", sa.Text, nullable=False, default="{}"),
    sa.Column("stage_times_json", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("event_id", sa.String(160), primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("applied", sa.Boolean, nullable=False),
)


idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("name", sa.String(256), nullable=False, default=""),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

#: The metering ledger: one row per accepted job, kept when the job is deleted (a bill must not
#: shrink because its jobs were cleaned up).
usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("audio_s", sa.Float, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
)


@dataclass
class JobRecord:
    job_id: str
    tenant: str
    state: str
    progress: float
    filename: str
    input_uri: str
    input_sha256: str
    audio_s: float
    options: dict[str, Any]
    error: dict[str, str] | None
    report_uri: str | None
    outputs: dict[str, dict[str, Any]]
    timings: dict[str, float]
    stage_times: dict[str, str]
    created_at: datetime
    updated_at: datetime
    admitted_at: datetime | None = None
    batch_id: str | None = None
    done: bool = field(init=False)

    def __post_init__(self) -> None:
        self.done = self.state in TERMINAL


def _engine_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class JobStore:
    def __init__(self, url: str) -> None:
        url = _engine_url(url)
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}
            )
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        # SQLite serialises writers itself; one lock keeps our read-modify-write atomic there.
        self._lock = threading.Lock() if url.startswith("sqlite") else None
        metadata.create_all(self.engine)
        webhooks.metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added after a database was created (create_all adds only tables)."""
        present = {c["name"] for c in sa.inspect(self.engine).get_columns("jobs")}
        if "audio_s" not in present:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text("ALTER TABLE jobs ADD COLUMN audio_s FLOAT NOT NULL DEFAULT 0")
                )

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def create_job(
        self,
        *,
        job_id: str,
        tenant: str,
        filename: str,
        input_uri: str,
        input_sha256: str,
        options: dict[str, Any],
        audio_s: float = 0.0,
        envelope: bytes | None = None,
        idempotency: tuple[str, str] | None = None,
        batch_id: str | None = None,
    ) -> str:
        """Insert a queued job and return its id.

        With ``idempotency=(key, request_sha256)`` the key is claimed for the tenant in the
        same transaction: if the tenant used it before for the same request, nothing is
        inserted and the earlier job's id is returned; for another request, ConflictError.
        """
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                if idempotency is not None:
                    conn.execute(
                        idempotency_keys.insert().values(
                            tenant=tenant,
                            key=idempotency[0],
                            request_sha256=idempotency[1],
                            job_id=job_id,
                            created_at=now,
                        )
                    )
                self._insert_job(
                    conn, job_id, tenant, filename, input_uri, input_sha256, options, now, audio_s
                )
                conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == job_id)
                    .values(envelope=envelope, batch_id=batch_id)
                )
                conn.execute(
                    usage_records.insert().values(
                        job_id=job_id, tenant=tenant, audio_s=audio_s, at=now
                    )
                )
        except IntegrityError:
            if idempotency is None:
                raise
            with self.engine.connect() as conn:
                row = conn.execute(
                    idempotency_keys.select().where(
                        idempotency_keys.c.tenant == tenant,
                        idempotency_keys.c.key == idempotency[0],
                    )
                ).first()
            if row is None:
                raise
            if row.request_sha256 != idempotency[1]:
                raise ConflictError(
                    f"Idempotency-Key {idempotency[0]!r} was used for a different request "
                    f"(job {row.job_id}); use a new key for a new job"
                ) from None
            return str(row.job_id)
        return job_id

    @staticmethod
    def _insert_job(
        conn: sa.Connection,
        job_id: str,
        tenant: str,
        filename: str,
        input_uri: str,
        input_sha256: str,
        options: dict[str, Any],
        now: datetime,
        audio_s: float,
    ) -> None:
        conn.execute(
            jobs.insert().values(
                job_id=job_id,
                tenant=tenant,
                audio_s=audio_s,
                state="queued",
                progress=0.0,
                filename=filename,
                input_uri=input_uri,
                input_sha256=input_sha256,
                options_json=json.dumps(options),
                outputs_json="{}",
                timings_json="{}",
                stage_times_json=json.dumps({"queued": now.isoformat()}),
                created_at=now,
                updated_at=now,
            )
        )

    def get_job(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(jobs.select().where(jobs.c.job_id == job_id)).mappings().first()
        return None if row is None else _record(row)

    def list_jobs(
        self, tenant: str, *, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page (None on
        the last one)."""
        q = jobs.select().where(jobs.c.tenant == tenant)
        if state is not None:
            q = q.where(jobs.c.state == state)
        if cursor:
            created, job_id = _decode_cursor(cursor)
            q = q.where(
                sa.or_(
                    jobs.c.created_at < created,
                    sa.and_(jobs.c.created_at == created, jobs.c.job_id < job_id),
                )
            )
        q = q.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            records = [_record(r) for r in conn.execute(q).mappings()]
        more = len(records) > limit
        records = records[:limit]
        last = records[-1] if more and records else None
        return records, None if last is None else _encode_cursor(last.created_at, last.job_id)

    # -- batches ---------------------------------------------------------------------------

    def create_batch(self, batch_id: str, tenant: str, name: str, total: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                batches.insert().values(
                    batch_id=batch_id,
                    tenant=tenant,
                    name=name,
                    total=total,
                    created_at=datetime.now(UTC),
                )
            )

    def fail_new_job(
        self, job_id: str, tenant: str, filename: str, batch_id: str, code: str, message: str
    ) -> None:
        """Record a batch item that could not become a job (bad audio, a limit): ``failed``
        from the start, with the reason, so the batch's manifest accounts for every file."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            self._insert_job(conn, job_id, tenant, filename, "", "", {}, now, 0.0)
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id)
                .values(
                    state="failed",
                    progress=1.0,
                    batch_id=batch_id,
                    error_code=code,
                    error_message=message,
                    error_stage="gateway",
                    stage_times_json=json.dumps({"failed": now.isoformat()}),
                )
            )

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch's row with its jobs' counts per state and mean progress."""
        with self.engine.connect() as conn:
            row = conn.execute(batches.select().where(batches.c.batch_id == batch_id)).first()
            if row is None:
                return None
            counts = _batch_counts(conn, batch_id)
            progress = conn.execute(
                sa.select(sa.func.coalesce(sa.func.avg(jobs.c.progress), 0.0)).where(
                    jobs.c.batch_id == batch_id
                )
            ).scalar_one()
        return {**row._mapping, "counts": counts, "progress": float(progress)}

    def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        q = (
            jobs.select()
            .where(jobs.c.batch_id == batch_id)
            .order_by(jobs.c.created_at, jobs.c.job_id)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q).mappings()]

    def list_batches(self, tenant: str, limit: int = 50) -> list[str]:
        q = (
            sa.select(batches.c.batch_id)
            .where(batches.c.tenant == tenant)
            .order_by(batches.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(r) for (r,) in conn.execute(q)]

    def check_batch_done(self, batch_id: str) -> None:
        with self.engine.begin() as conn:
            self._batch_done_in(conn, batch_id)

    @staticmethod
    def _batch_done_in(conn: sa.Connection, batch_id: str) -> None:
        """Owe ``batch.done`` when every file of the batch is a finished job."""
        row = conn.execute(batches.select().where(batches.c.batch_id == batch_id)).first()
        if row is None:
            return
        counts = _batch_counts(conn, batch_id)
        finished = sum(n for state, n in counts.items() if state in TERMINAL)
        if sum(counts.values()) == row.total and finished == row.total:
            data = {
                "batch_id": batch_id,
                "counts": counts,
                "links": {"batch": f"/v1/batches/{batch_id}"},
            }
            webhooks.enqueue(conn, row.tenant, "batch.done", f"{batch_id}:done", data)

    def in_flight(self, tenant: str) -> int:
        """The tenant's jobs that are neither done nor failed."""
        q = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.tenant == tenant, jobs.c.state.not_in(list(TERMINAL)))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def waiting(self, tenant: str) -> int:
        """The tenant's jobs still waiting for admission into the pipeline."""
        q = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.tenant == tenant, jobs.c.state == "queued", jobs.c.admitted_at.is_(None))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def usage(self, tenant: str, start: datetime, end: datetime) -> tuple[int, float]:
        """(jobs, seconds of audio) the tenant submitted in [start, end): every accepted job
        counts, whatever became of it, deleted or not."""
        r = usage_records.c
        q = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(r.audio_s), 0.0)).where(
            r.tenant == tenant, r.at >= start, r.at < end
        )
        with self.engine.connect() as conn:
            count, seconds = conn.execute(q).one()
        return int(count), float(seconds)

    def cancel_job(self, job_id: str) -> bool:
        """Move a job that is not finished to ``failed`` with code ``cancelled`` (through the
        same idempotent event path as the stages' events); False if it had finished."""
        event = pb.JobEvent(
            event_id=f"{job_id}:cancelled",
            job_id=job_id,
            state=pb.JOB_STATE_FAILED,
            progress=1.0,
            stage="gateway",
            error=pb.JobError(
                code="cancelled", message="cancelled at the client's request", stage="gateway"
            ),
        )
        event.at.GetCurrentTime()
        return self.apply_event(event)

    def add_version(
        self,
        job_id: str,
        prefix: str,
        output: dict[str, Any],
        write_report: Callable[[str, str | None], str],
    ) -> tuple[str, str | None]:
        """Add a version rendered later (a user's edit) to a finished job, under the next free
        name ``<prefix>-N``. ``write_report(name, report_uri)`` stores the job's report with the
        version in it and returns the new report's uri. The job row stays locked meanwhile, so
        concurrent additions get distinct names and each report holds every version.

        Returns the version's name and the report uri it replaced."""
        with self._serial(), self.engine.begin() as conn:
            row = (
                conn.execute(jobs.select().where(jobs.c.job_id == job_id).with_for_update())
                .mappings()
                .first()
            )
            if row is None:
                raise NotFoundError(f"no job {job_id}")
            outputs = json.loads(row["outputs_json"])
            n = 1
            while f"{prefix}-{n}" in outputs:
                n += 1
            name = f"{prefix}-{n}"
            report_uri = write_report(name, row["report_uri"])
            outputs[name] = output
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id)
                .values(
                    outputs_json=json.dumps(outputs),
                    report_uri=report_uri,
                    updated_at=datetime.now(UTC),
                )
            )
        return name, row["report_uri"]

    def delete_job(self, job_id: str) -> None:
        """Forget a job: its row, its events and the idempotency keys that point at it."""
        with self.engine.begin() as conn:
            conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
            conn.execute(idempotency_keys.delete().where(idempotency_keys.c.job_id == job_id))
            conn.execute(jobs.delete().where(jobs.c.job_id == job_id))

    def blob_in_use(self, uri: str) -> bool:
        """Whether any job still refers to the (content-addressed, so shareable) blob ``uri``."""
        like = "%" + uri.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(
                sa.or_(
                    jobs.c.input_uri == uri,
                    jobs.c.report_uri == uri,
                    jobs.c.outputs_json.like(like, escape="\\"),
                )
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one()) > 0

    def count_events(self, job_id: str, state: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(job_events).where(job_events.c.job_id == job_id)
        if state is not None:
            q = q.where(job_events.c.state == state)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    @contextmanager
    def _serial(self) -> Iterator[None]:
        """Writers one at a time on SQLite (PostgreSQL serialises them with row locks)."""
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def apply_event(self, event: pb.JobEvent) -> bool:
        """Apply ``event`` once. Returns False when it was a duplicate or would move the job
        backwards (it is still recorded as seen)."""
        with self._serial():
            return self._apply(event)

    def _apply(self, event: pb.JobEvent) -> bool:
        state = STATE_NAMES.get(event.state)
        if state is None:
            return False
        at = event.at.ToDatetime(tzinfo=UTC) if event.HasField("at") else datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                row = (
                    conn.execute(
                        jobs.select().where(jobs.c.job_id == event.job_id).with_for_update()
                    )
                    .mappings()
                    .first()
                )
                applies = row is not None and _moves_forward(row["state"], state)
                conn.execute(
                    job_events.insert().values(
                        event_id=event.event_id,
                        job_id=event.job_id,
                        state=state,
                        at=at,
                        applied=applies,
                    )
                )
                if not applies or row is None:
                    return False
                stage_times = json.loads(row["stage_times_json"])
                stage_times.setdefault(state, at.isoformat())
                timings = {**json.loads(row["timings_json"]), **dict(event.timings_s)}
                values: dict[str, Any] = {
                    "state": state,
                    "progress": max(float(row["progress"]), event.progress),
                    "stage_times_json": json.dumps(stage_times),
                    "timings_json": json.dumps(timings),
                    "updated_at": datetime.now(UTC),
                }
                if state == "failed":
                    values.update(
                        error_code=event.error.code or "internal",
                        error_message=event.error.message,
                        error_stage=event.error.stage,
                    )
                if state == "done":
                    values.update(
                        report_uri=event.report.uri, outputs_json=json.dumps(_outputs(event))
                    )
                conn.execute(jobs.update().where(jobs.c.job_id == event.job_id).values(**values))
                if state in TERMINAL:  # owed to the tenant's webhooks, in this transaction
                    data = {
                        "job_id": event.job_id,
                        "state": state,
                        "error": None
                        if state == "done"
                        else {
                            "code": values["error_code"],
                            "message": values["error_message"],
                            "stage": values["error_stage"],
                        },
                        "links": {"job": f"/v1/jobs/{event.job_id}"},
                    }
                    webhooks.enqueue(
                        conn, row["tenant"], f"job.{state}", f"{event.job_id}:{state}", data
                    )
                    if row["batch_id"]:
                        self._batch_done_in(conn, row["batch_id"])
                return True
        except IntegrityError:
            return False  # this event id was applied before: a redelivery


def _batch_counts(conn: sa.Connection, batch_id: str) -> dict[str, int]:
    """A batch's jobs counted per state."""
    rows = conn.execute(
        sa.select(jobs.c.state, sa.func.count())
        .where(jobs.c.batch_id == batch_id)
        .group_by(jobs.c.state)
    ).all()
    return {str(state): int(n) for state, n in rows}


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidParameterError("cursor: not a cursor this API returned") from exc


def _moves_forward(current: str, new: str) -> bool:
    if current in TERMINAL:
        return False
    if new == "failed":
        return True
    return STATE_RANK[new] > STATE_RANK[current]


def _outputs(event: pb.JobEvent) -> dict[str, dict[str, Any]]:
    return {o.name: output_record(o) for o in event.outputs}


def output_record(o: pb.RenderedVersion) -> dict[str, Any]:
    """How a job's version is kept in ``outputs_json``."""
    return {
        "uri": o.audio.uri,
        "sha256": o.audio.sha256,
        "size_bytes": o.audio.size_bytes,
        "loudness_lufs": o.loudness_lufs,
        "true_peak_dbtp": o.true_peak_dbtp,
        "params": dict(o.params.values),
    }


def _record(row: Any) -> JobRecord:
    error = None
    if row["error_code"]:
        error = {
            "code": row["error_code"],
            "message": row["error_message"] or "",
            "stage": row["error_stage"] or "",
        }
    return JobRecord(
        job_id=row["job_id"],
        tenant=row["tenant"],
        state=row["state"],
        progress=float(row["progress"]),
        filename=row["filename"],
        input_uri=row["input_uri"],
        input_sha256=row["input_sha256"],
        audio_s=float(row["audio_s"] or 0.0),
        options=json.loads(row["options_json"]),
        error=error,
        report_uri=row["report_uri"],
        outputs=json.loads(row["outputs_json"]),
        timings=json.loads(row["timings_json"]),
        stage_times=json.loads(row["stage_times_json"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        admitted_at=row["admitted_at"],
        batch_id=row["batch_id"],
    )
