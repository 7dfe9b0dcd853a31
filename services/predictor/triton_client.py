"""The predictor's path to Triton: :class:`TritonModels`, a
:class:`~services.predictor.inference.ModelRunner` over ``tritonclient.grpc``.

Used when ``MIXPILOT_TRITON_URL`` is set (:func:`services.predictor.stage.model_runner`).

* **One request per model and song**: the song's clips (``MEL``, ``CONTEXT``) in, their
  normalised predictions (``PARAMS``) out. The three models of a song are called at once, and
  the Kafka worker runs several jobs at once (``MIXPILOT_PREDICTOR_CONCURRENCY``), so requests
  overlap and Triton's dynamic batching can merge them.
* **Timeouts and bounded retries**: every call has a deadline (``MIXPILOT_TRITON_TIMEOUT_S``);
  a server or model that is unavailable, not loaded yet or too slow is retried with
  exponential backoff until ``MIXPILOT_TRITON_RETRY_S`` has passed, then the job gets a
  retriable :class:`~services.common.errors.ModelUnavailableError` naming the model, the server
  and the last error.
* **Readiness**: :meth:`TritonModels.status` (server ready and every model ready) feeds the
  predictor's gRPC health and gates its Kafka worker; :meth:`TritonModels.check` compares each
  model's served inputs and outputs with what this code sends, and a mismatch is a
  :class:`~services.common.errors.ModelMismatchError` that says to regenerate the repository.
* **Metrics**: ``mixpilot_predictor_triton_request_seconds{model}`` and
  ``mixpilot_predictor_triton_errors_total{model,code}``.

``tritonclient``'s gRPC client is used one instance per thread (the Python clients are not
documented as thread-safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from services.common.errors import MixPilotError, ModelMismatchError, ModelUnavailableError
from services.predictor.training.config import MODEL_NAMES
from services.predictor.triton_model import INPUT_CONTEXT, INPUT_MEL, OUTPUT_PARAMS
from services.predictor.triton_repository import CONTEXT_DIMS, MEL_DIMS, PARAMS_DIMS

log = logging.getLogger(__name__)

REQUEST_SECONDS = Histogram(
    "mixpilot_predictor_triton_request_seconds",
    "Latency of one Triton inference call (one model, one song), successful or not",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
ERRORS = Counter(
    "mixpilot_predictor_triton_errors_total",
    "Failed Triton inference calls, by model and gRPC status",
    ["model", "code"],
)

#: gRPC statuses worth retrying: the server is away, the call ran out of time, the model is
#: loading or missing (a rollout may be loading it).
_TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "CANCELLED"}
#: The interface every served model must have: name -> shape without the batch dimension.
EXPECTED_INPUTS = {INPUT_MEL: list(MEL_DIMS), INPUT_CONTEXT: list(CONTEXT_DIMS)}
EXPECTED_OUTPUTS = {OUTPUT_PARAMS: list(PARAMS_DIMS)}


def _status(exc: Exception) -> str:
    """The gRPC status name of a tritonclient error ("UNAVAILABLE"), "UNKNOWN" if none."""
    raw = getattr(exc, "status", lambda: None)()
    return str(raw).rsplit(".", 1)[-1] if raw else "UNKNOWN"


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", lambda: str(exc))()
    return " ".join(str(text).split()) or type(exc).__name__


def interface_problems(metadata: dict[str, Any]) -> list[str]:
    """How a model's metadata (``get_model_metadata(..., as_json=True)``) differs from the
    interface this code sends and reads; empty when it matches."""
    problems = []
    for kind, expected in (("input", EXPECTED_INPUTS), ("output", EXPECTED_OUTPUTS)):
        served = {
            t["name"]: [int(d) for d in t.get("shape", [])] for t in metadata.get(kind + "s", [])
        }
        for name, dims in expected.items():
            want = [-1, *dims]
            if name not in served:
                problems.append(f"no {kind} {name} (has {', '.join(served) or 'none'})")
            elif served[name] != want:
                problems.append(f"{kind} {name} is {served[name]}, this predictor uses {want}")
    return problems


class TritonModels:
    """The mix models on a Triton server.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    timeout_s : float
        Deadline of one call.
    retry_s : float
        How long unavailability is retried (with backoff from ``backoff_s`` doubling up to
        ``max_backoff_s``) before a call fails.
    models : sequence of str
        The models this predictor needs (readiness checks them all).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        retry_s: float = 60.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        models: Sequence[str] = MODEL_NAMES,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.models = tuple(models)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, 2 * len(self.models)), thread_name_prefix="triton"
        )

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(self.url)
            self._local.client = client
        return client

    # -- readiness -------------------------------------------------------------------------

    def status(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """(ready, reason): the server answers and every model is loaded and ready."""
        try:
            client = self._client()
            missing = [
                m for m in self.models if not client.is_model_ready(m, client_timeout=timeout_s)
            ]
            server_ready = client.is_server_ready(client_timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means not ready
            return False, f"Triton at {self.url} does not answer: {_message(exc)}"
        if missing:
            return False, f"Triton at {self.url} has no ready model {', '.join(missing)}"
        if not server_ready:
            return False, f"Triton at {self.url} is not ready"
        return True, f"Triton at {self.url}: {', '.join(self.models)} ready"

    def check(self, timeout_s: float = 5.0) -> None:
        """Raise unless every model is ready and takes this code's inputs and outputs.

        Raises
        ------
        ModelUnavailableError
            The server or a model is not ready.
        ModelMismatchError
            A model's inputs or outputs differ from what this predictor sends and reads.
        """
        ready, reason = self.status(timeout_s)
        if not ready:
            raise ModelUnavailableError(reason)
        problems = {}
        for name in self.models:
            meta = self._client().get_model_metadata(name, as_json=True, client_timeout=timeout_s)
            if found := interface_problems(meta):
                problems[name] = found
        if problems:
            detail = "; ".join(f"{m}: {', '.join(p)}" for m, p in problems.items())
            raise ModelMismatchError(
                f"Triton at {self.url} serves models this predictor cannot use ({detail}); "
                "regenerate the repository from this version with `mixpilot triton-repo`"
            )

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until :meth:`check` passes; raise its error after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        delay = self.backoff_s
        while True:
            try:
                self.check()
                return
            except ModelUnavailableError:
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, self.max_backoff_s)

    # -- inference -------------------------------------------------------------------------

    def predict(
        self, names: Sequence[str], mel: np.ndarray, context: np.ndarray
    ) -> dict[str, np.ndarray]:
        futures = {n: self._pool.submit(self.infer, n, mel, context) for n in names}
        return {n: f.result() for n, f in futures.items()}

    def infer(self, name: str, mel: np.ndarray, context: np.ndarray) -> np.ndarray:
        """One model's predictions for the clips, retried while the model is unavailable."""
        deadline = time.monotonic() + self.retry_s
        delay = self.backoff_s
        tries = 0
        while True:
            tries += 1
            try:
                return self._infer_once(name, mel, context)
            except ModelUnavailableError as exc:
                if time.monotonic() + delay > deadline:
                    raise ModelUnavailableError(
                        f"model {name} on Triton at {self.url} unavailable after {tries} tries "
                        f"in {self.retry_s:g} s: {exc.message}"
                    ) from exc
                log.warning(
                    "triton call failed; retrying",
                    extra={"model": name, "try": tries, "reason": exc.message},
                )
            time.sleep(delay)
            delay = min(2 * delay, self.max_backoff_s)

    def _infer_once(self, name: str, mel: np.ndarray, context: np.ndarray) -> np.ndarray:
        import tritonclient.grpc as grpcclient

        mel = np.ascontiguousarray(mel, dtype=np.float32)
        context = np.ascontiguousarray(context, dtype=np.float32)
        inputs = [
            grpcclient.InferInput(INPUT_MEL, list(mel.shape), "FP32"),
            grpcclient.InferInput(INPUT_CONTEXT, list(context.shape), "FP32"),
        ]
        inputs[0].set_data_from_numpy(mel)
        inputs[1].set_data_from_numpy(context)
        outputs = [grpcclient.InferRequestedOutput(OUTPUT_PARAMS)]
        start = time.perf_counter()
        try:
            result = self._client().infer(
                name, inputs, outputs=outputs, client_timeout=self.timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            code = _status(exc)
            ERRORS.labels(model=name, code=code).inc()
            text = f"{code}: {_message(exc)}"
            if code in _TRANSIENT:
                raise ModelUnavailableError(text) from exc
            if code == "INVALID_ARGUMENT":
                raise ModelMismatchError(
                    f"model {name} on Triton at {self.url} refused its input ({text})"
                ) from exc
            raise MixPilotError(f"model {name} on Triton at {self.url} failed: {text}") from exc
        finally:
            REQUEST_SECONDS.labels(model=name).observe(time.perf_counter() - start)
        params = result.as_numpy(OUTPUT_PARAMS)
        if params is None or params.shape != (mel.shape[0], *PARAMS_DIMS):
            shape = None if params is None else list(params.shape)
            ERRORS.labels(model=name, code="BAD_OUTPUT").inc()
            raise ModelMismatchError(
                f"model {name} on Triton at {self.url} answered {OUTPUT_PARAMS} of shape {shape}, "
                f"expected {[mel.shape[0], *PARAMS_DIMS]}"
            )
        return params

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
