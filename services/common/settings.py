"""The one settings module: every process builds one :class:`Settings` from ``MIXPILOT_*``
environment variables at start and passes it down. Nothing else reads ``os.environ``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import ConfigurationError

#: Hosts only this machine can reach.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

Role = Literal["embedded", "serve", "analyzer", "predictor", "renderer", "gateway"]


class Settings(BaseSettings):
    """Runtime configuration. Field ``x`` reads ``MIXPILOT_X``."""

    model_config = SettingsConfigDict(env_prefix="MIXPILOT_", extra="ignore", frozen=True)

    # Infrastructure (distributed mode).
    kafka_bootstrap: str | None = Field(None, description="host:port[,host:port] of Kafka")
    triton_url: str | None = Field(None, description="host:port of Triton's gRPC endpoint")
    database_url: str = Field(
        "sqlite:///mixpilot-data/jobs.sqlite3",
        description="postgresql://... (distributed) or sqlite:///path (one machine)",
    )
    blob_url: str = Field(
        "file://mixpilot-data/blobs", description="file://DIR or s3://BUCKET/PREFIX"
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, tests)")
    import_prefix: str = Field(
        "imports",
        pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$",
        description="with an S3 blob store, tenant T's import area is s3://BUCKET/<this>/T/"
        " (POST /v1/batches/import)",
    )
    cache_dir: Path = Field(
        Path("mixpilot-data/cache"),
        description="the gateway's disposable cache: downloads encoded to other formats, ZIPs",
    )

    # Predictor on Triton (used when triton_url is set; docs/triton.md).
    triton_timeout_s: float = Field(30.0, gt=0, description="deadline of one Triton call")
    triton_retry_s: float = Field(
        60.0,
        ge=0,
        description="how long an unavailable Triton (or model) is retried before a job's try fails",
    )
    predictor_concurrency: int = Field(
        0,
        ge=0,
        le=64,
        description="jobs the predictor's Kafka worker runs at once; 0 = 8 on Triton (its dynamic"
        " batching merges their requests), 1 with local models",
    )

    # Network.
    host: str = "127.0.0.1"
    gateway_port: int = Field(8080, ge=0, le=65535)
    analyzer_port: int = Field(50051, ge=0, le=65535)
    predictor_port: int = Field(50052, ge=0, le=65535)
    renderer_port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus port; 0 = per-role default"
    )

    # Access.
    auth: Literal["auto", "api_key", "none"] = Field(
        "auto",
        description="api_key: every /v1 request needs `Authorization: Bearer <key>` (keys from"
        " `mixpilot keys create`); none: one open tenant, `local` (a single user's machine"
        " only); auto: api_key, except `mixpilot serve` listening on loopback only: none",
    )

    # Admission (gateway/admission.py).
    admission_window: int = Field(
        32,
        ge=1,
        description="jobs in the pipeline at once, all tenants together; more wait at the"
        " gateway and are let in fairly (the tenant with the fewest in the pipeline first)",
    )

    # Webhooks (gateway/webhooks.py).
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="tries of one delivery")
    webhook_backoff_s: float = Field(
        5.0, gt=0, description="wait before the second try; doubles each try, at most 1 h"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="deadline of one delivery POST")
    webhook_allow_private: bool = Field(
        False,
        description="let webhooks target loopback/private addresses (tests, a closed network)",
    )

    # Limits and job defaults.
    max_upload_mb: float = Field(500.0, gt=0)
    max_duration_s: float = Field(1200.0, gt=0)
    target_lufs: float = Field(-14.0, ge=-40.0, le=-5.0)
    true_peak_ceiling_dbtp: float = Field(-1.0, ge=-9.0, le=0.0)
    render_workers: int = Field(
        0, ge=0, le=64, description="versions of a job rendered at once; 0 = the CPUs available"
    )
    render_cache_mb: float = Field(
        512.0,
        ge=0,
        description="the renderer's cache of decoded songs for re-renders and previews (a"
        " listener moving a slider re-renders one song many times); 0 = no cache",
    )

    # Re-renders from the gateway (POST /v1/jobs/{id}/renders).
    renderer_url: str | None = Field(
        None,
        description="host:port of the renderer's gRPC endpoint that the gateway sends re-renders"
        " and previews to; unset = render them in the gateway's own process",
    )
    rerender_timeout_s: float = Field(
        120.0, gt=0, description="deadline of one re-render or preview call to the renderer"
    )

    # Delivery.
    max_attempts: int = Field(3, ge=1, le=20, description="tries before a message goes to the DLQ")
    retry_backoff_s: float = Field(0.5, ge=0.0)
    consumer_group_prefix: str = "mixpilot"
    kafka_session_timeout_ms: int = Field(10000, ge=1000)
    topic_partitions: int = Field(3, ge=1)
    grace_s: float = Field(10.0, ge=0.0, description="graceful shutdown time for in-flight work")

    # Song generator (`mixpilot generate`: training and test audio only).
    soundfont: str | None = Field(
        None,
        description="path of a General MIDI .sf2 for `mixpilot generate`; unset = the Debian"
        " soundfonts (/usr/share/sounds/sf2/TimGM6mb.sf2, then FluidR3_GM.sf2)",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @field_validator("blob_url")
    @classmethod
    def _blob_scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError("must start with file:// or s3://")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if not v.startswith(("postgresql", "postgres://", "sqlite:")):
            raise ValueError("must be a postgresql://... or sqlite:///... URL")
        return v

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def one_machine_auth(self) -> Literal["api_key", "none"]:
        """:attr:`auth` for `mixpilot serve`: ``auto`` means no keys when nobody but this
        machine can connect (a loopback host), keys otherwise."""
        if self.auth != "auto":
            return self.auth
        return "none" if self.host in LOOPBACK_HOSTS else "api_key"

    @property
    def render_cache_bytes(self) -> int:
        return int(self.render_cache_mb * 1024 * 1024)

    @property
    def predictor_jobs_at_once(self) -> int:
        """:attr:`predictor_concurrency` with its default resolved."""
        if self.predictor_concurrency:
            return self.predictor_concurrency
        return 8 if self.triton_url else 1

    def metrics_port_for(self, role: Role) -> int:
        defaults = {"analyzer": 9101, "predictor": 9102, "renderer": 9103}
        return self.metrics_port or defaults.get(role, 0)

    def require_distributed(self, role: Role) -> None:
        """Fail start-up with a clear message when a distributed service lacks what it needs."""
        if not self.kafka_bootstrap:
            raise ConfigurationError(
                f"`mixpilot {role}` runs distributed: set MIXPILOT_KAFKA_BOOTSTRAP=host:port"
            )
        if role == "gateway" and self.database_url.startswith("sqlite") and not self.allow_sqlite:
            raise ConfigurationError(
                "the distributed gateway needs PostgreSQL: set MIXPILOT_DATABASE_URL=postgresql://..."
                " (or MIXPILOT_ALLOW_SQLITE=true for a single gateway replica)"
            )

    allow_sqlite: bool = False


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides, e.g. from CLI flags).

    Raises
    ------
    ConfigurationError
        One line naming the bad variable(s).
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            name = "MIXPILOT_" + "_".join(str(x) for x in err["loc"]).upper()
            parts.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(parts)) from exc


def data_dir_of(url: str) -> Path:
    """Filesystem path of a file:// or sqlite:/// URL (relative paths stay relative)."""
    for prefix in ("file://", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    raise ConfigurationError(f"not a local URL: {url}")
