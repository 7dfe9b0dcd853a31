"""The few typed domain errors of MixPilot, mapped once to HTTP status, gRPC status and job
failure code. Adapters (gRPC servers, Kafka workers, the REST gateway, the CLI) translate these;
domain code only raises them."""

from __future__ import annotations


class MixPilotError(Exception):
    """Base class. ``code`` is the stable failure reason integrators see on a failed job."""

    code: str = "internal"
    http_status: int = 500
    grpc_status: str = "INTERNAL"  # name of a grpc.StatusCode member
    retriable: bool = False

    def __init__(self, message: str) -> None:
        # One readable line, always.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class InvalidAudioError(MixPilotError):
    """The bytes decode, but the audio cannot be mixed (empty, silent, NaN, too short...)."""

    code = "invalid_audio"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class UnsupportedFormatError(MixPilotError):
    """Not an audio container we can decode, or a layout we do not process."""

    code = "unsupported_format"
    http_status = 415
    grpc_status = "INVALID_ARGUMENT"


class LimitExceededError(MixPilotError):
    """A configured limit (file size, duration) is exceeded."""

    code = "limit_exceeded"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class HeadersTooLargeError(LimitExceededError):
    """A request's headers are larger than the gateway accepts."""

    http_status = 431


class InvalidParameterError(MixPilotError, ValueError):
    """A mix parameter or option is unknown or out of its range."""

    code = "invalid_parameter"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class InvalidMessageError(MixPilotError):
    """A bus message or request that does not follow the proto contract."""

    code = "invalid_message"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class UnauthenticatedError(MixPilotError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class ConflictError(MixPilotError):
    """The request conflicts with the resource's state (an idempotency key reused for another
    request, a finished job cancelled, a running job deleted)."""

    code = "conflict"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class QuotaExceededError(MixPilotError):
    """A tenant's plan limit is reached: concurrent jobs (429) or, with ``monthly=True``, the
    audio minutes of the month (402). ``limit`` says which limit, its value and the usage."""

    code = "quota_exceeded"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, limit: dict[str, object], monthly: bool = False) -> None:
        super().__init__(message)
        self.limit = limit
        if monthly:
            self.http_status = 402


class RateLimitedError(MixPilotError):
    """Too many requests for the tenant's plan; retry after ``retry_after_s``."""

    code = "rate_limited"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFoundError(MixPilotError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class ModelUnavailableError(MixPilotError):
    """A model or an upstream service is not ready; worth retrying."""

    code = "model_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    retriable = True


class ServiceUnavailableError(MixPilotError):
    """A service this request needs (the renderer, for a re-render) did not answer in time."""

    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    retriable = True


class ModelMismatchError(MixPilotError):
    """A served model does not take what this code sends (another shape or version): the
    model repository must be regenerated from this code's weights; retrying cannot help."""

    code = "model_mismatch"
    http_status = 500
    grpc_status = "FAILED_PRECONDITION"


class ConfigurationError(MixPilotError):
    """Settings are missing or unsafe: raised at start-up, never mid-job."""

    code = "configuration"


def _subclasses(cls: type[MixPilotError]) -> list[type[MixPilotError]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def error_from_details(details: str | None) -> MixPilotError | None:
    """The typed error a MixPilot gRPC server sent (``"code: message"``, see
    :func:`services.common.grpc_server.map_errors`), or None if ``details`` is not one."""
    code, sep, message = (details or "").partition(": ")
    if not sep:
        return None
    for cls in _subclasses(MixPilotError):
        if cls.code == code and cls not in (QuotaExceededError, RateLimitedError):
            return cls(message)
    return None
