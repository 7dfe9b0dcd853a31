"""Batches from the tenant's bucket: ``POST /v1/batches/import`` turns every object under a
prefix of the tenant's import area into a job, without the files passing through the client.

With an S3 blob store (``MIXPILOT_BLOB_URL=s3://BUCKET/...``) each tenant has an import area,
``s3://BUCKET/<MIXPILOT_IMPORT_PREFIX>/<tenant>/``: an operator gives a label credentials
scoped to it, the label copies its delivery there, and asks for a batch of a prefix of it.

The request lists the objects and records one import item per object (in the job database, so
a gateway that restarts carries on where it stopped); it answers at once with the batch. The
importer thread of any gateway replica then takes items one at a time, interleaving batches
(the item with the lowest number in its batch goes first, so one label's 10,000 files do not
hold up another's 10): it downloads the object to a temporary file (bounded by the plan's upload
size), checks it exactly as an upload is checked, stores it content-addressed (so a later change
of the object does not change the job) and creates the job, which then waits for fair admission
like any other. An object that is not usable audio or is over a limit becomes a ``failed`` item
of the batch with its reason. A batch's ``counts`` show items not yet imported as
``importing``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gateway import intake
from gateway.pump import PumpThread
from services.common.blobstore import S3BlobStore
from services.common.errors import ConflictError, InvalidParameterError, MixPilotError

if TYPE_CHECKING:
    from gateway.api import Gateway

log = logging.getLogger(__name__)

metadata = sa.MetaData()

batch_imports = sa.Table(
    "batch_imports",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("options_json", sa.Text, nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
)

#: An item claimed longer ago than this (its gateway died mid-item) is taken again.
STALE_CLAIM = timedelta(minutes=10)
_UNSAFE_PREFIX = re.compile(r"(^/)|(//)|(\\)|(^|/)\.\.?(/|$)|[\x00-\x1f\x7f]")


def import_root(prefix_setting: str, tenant: str) -> str:
    """The tenant's import area: a key prefix in the blob store's bucket."""
    return f"{prefix_setting.strip('/')}/{tenant}/"


def check_prefix(prefix: str) -> str:
    """A prefix inside the import area: no absolute path, no ``..`` or ``.`` segment, no empty
    segment, no control characters (S3 keys are literal, but nothing should look like a way
    out of the tenant's area)."""
    if _UNSAFE_PREFIX.search(prefix):
        raise InvalidParameterError(
            f"prefix {prefix!r}: a path inside your import area, like 'album-1/' (no leading "
            "'/', no '..' or '.' segments, no '//', no control characters)"
        )
    return prefix


def item_job_id(batch_id: str, seq: int) -> str:
    """The job an import item becomes: the same id if the item is imported twice (a gateway
    died after creating the job and before recording it), so it is never two jobs."""
    return hashlib.sha256(f"{batch_id}:{seq}".encode()).hexdigest()[:32]


class Importer(PumpThread):
    def __init__(self, gw: Gateway, *, poll_s: float = 1.0) -> None:
        super().__init__("importer", poll_s=poll_s)
        self.gw = gw
        self.engine = gw.store.engine
        metadata.create_all(self.engine)

    # -- requests ---------------------------------------------------------------------------

    def bucket(self) -> S3BlobStore:
        blobs = self.gw.blobs
        if not isinstance(blobs, S3BlobStore):
            raise ConflictError(
                "imports from a bucket need an S3 blob store (MIXPILOT_BLOB_URL=s3://...); "
                "upload the files with POST /v1/batches instead"
            )
        return blobs

    def objects(self, tenant: str, prefix: str) -> tuple[str, list[tuple[str, int]]]:
        """(the source URI, [(object key, size)]) of the objects under ``prefix`` of the
        tenant's import area, folder markers left out, in key order."""
        bucket = self.bucket()
        root = import_root(self.gw.settings.import_prefix, tenant) + check_prefix(prefix)
        objects = [(k, n) for k, n in bucket.list_keys(root) if not k.endswith("/")]
        source = f"s3://{bucket.bucket}/{root}"
        if not objects:
            raise InvalidParameterError(f"no objects under {source}")
        return source, objects

    def add(
        self, batch_id: str, tenant: str, objects: list[tuple[str, int]], options: dict[str, Any]
    ) -> None:
        """Record the batch's items and wake the thread."""
        encoded = json.dumps(options)
        rows = [
            {
                "batch_id": batch_id,
                "seq": seq,
                "tenant": tenant,
                "object_key": key,
                "size_bytes": size,
                "options_json": encoded,
            }
            for seq, (key, size) in enumerate(objects)
        ]
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                conn.execute(batch_imports.insert(), rows[start : start + 1000])
        self.wake()

    def pending(self, batch_id: str) -> int:
        q = sa.select(sa.func.count()).where(batch_imports.c.batch_id == batch_id)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # -- the thread -------------------------------------------------------------------------

    def pump(self) -> int:
        """Import items until none is left (or the thread stops); how many."""
        done = 0
        while not self.stopping:
            item = self._claim()
            if item is None:
                return done
            try:
                self._import(item)
            except Exception:
                self._release(item)
                raise
            done += 1
        return done

    def _claim(self) -> Any:
        now = datetime.now(UTC)
        free = sa.or_(
            batch_imports.c.claimed_at.is_(None), batch_imports.c.claimed_at < now - STALE_CLAIM
        )
        c = batch_imports.c
        with self.engine.begin() as conn:
            for row in conn.execute(
                batch_imports.select().where(free).order_by(c.seq, c.batch_id).limit(8)
            ):
                claimed = conn.execute(
                    batch_imports.update()
                    .where(c.batch_id == row.batch_id, c.seq == row.seq, free)
                    .values(claimed_at=now)
                )
                if claimed.rowcount == 1:
                    return row
        return None

    def _release(self, item: Any) -> None:
        c = batch_imports.c
        with self.engine.begin() as conn:
            conn.execute(
                batch_imports.update()
                .where(c.batch_id == item.batch_id, c.seq == item.seq)
                .values(claimed_at=None)
            )

    def _done(self, item: Any) -> None:
        c = batch_imports.c
        with self.engine.begin() as conn:
            conn.execute(
                batch_imports.delete().where(c.batch_id == item.batch_id, c.seq == item.seq)
            )
        self.gw.store.check_batch_done(item.batch_id)

    def _import(self, item: Any) -> None:
        gw = self.gw
        job_id = item_job_id(item.batch_id, item.seq)
        if gw.store.get_job(job_id) is None:
            self._create(item, job_id)
        self._done(item)
        gw.admission.wake()

    def _create(self, item: Any, job_id: str) -> None:
        gw = self.gw
        tenant = item.tenant
        plan = gw.plan_of(tenant)
        filename = intake.safe_filename(item.object_key.rsplit("/", 1)[-1])
        limit = intake.upload_limit_bytes(gw.settings, plan)
        try:
            if item.size_bytes > limit:
                raise intake.too_large(limit)
            with tempfile.TemporaryDirectory(prefix="mixpilot-import-") as tmp:
                path = Path(tmp) / "object"
                self.bucket().download_key(item.object_key, path, max_bytes=limit)
                stored, info, audio_s = intake.accept_file(gw, tenant, plan, path)
        except MixPilotError as exc:
            gw.store.fail_new_job(job_id, tenant, filename, item.batch_id, exc.code, exc.message)
            return
        options = json.loads(item.options_json)
        intake.enqueue_job(
            gw, job_id, tenant, filename, stored, info, options, audio_s, batch_id=item.batch_id
        )
