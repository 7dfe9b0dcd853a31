"""A small Python client of the MixPilot REST API, for integrators (and the tests).

    from gateway.client import MixPilotClient

    with MixPilotClient("https://mixpilot.example.com", api_key) as mp:
        job = mp.submit("song.wav", target_lufs=-14, idempotency_key="song-1")
        done = mp.wait(job["job_id"], on_progress=lambda j: print(j["state"], j["progress"]))
        mp.download(done["job_id"], "ai_enhanced_cnn", "out/song-ai.flac", format="flac")
        batch = mp.submit_batch(["a.wav", "b.flac"], name="EP")
        for row in mp.manifest(mp.wait_batch(batch["batch_id"])["batch_id"]):
            print(row["filename"], row["state"])

Every error of the API is raised as :class:`ApiError` with its ``status``, ``code`` and
``message``. ``429 rate_limited`` answers are retried after their ``Retry-After`` (at most
``max_retries`` times); nothing else is retried behind the caller's back. Only httpx is needed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

Job = dict[str, Any]


class ApiError(Exception):
    """An error answer of the API: ``{"error": {"code", "message"}}`` and its HTTP status."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class MixPilotClient:
    """The API as the tenant of ``api_key``.

    Parameters
    ----------
    base_url : str
        Where the gateway answers, e.g. ``"http://127.0.0.1:8080"``.
    api_key : str or None
        ``mpk_...`` from ``mixpilot keys create`` (None for a gateway with ``MIXPILOT_AUTH=none``).
    timeout_s : float
        Deadline of one request (uploads and downloads stream within it).
    http : httpx.Client, optional
        A client to send through instead of a new one (tests pass an in-process app's client).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_s)
        self._headers = headers
        self.max_retries = max_retries

    def __enter__(self) -> MixPilotClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self._headers, **kw.pop("headers", {})}
        for attempt in range(self.max_retries + 1):
            response = self._http.request(method, path, headers=headers, **kw)
            if response.status_code == 429 and attempt < self.max_retries:
                if _error(response).code == "rate_limited":
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        audio: str | Path | BinaryIO,
        *,
        filename: str | None = None,
        target_lufs: float | None = None,
        genre: str | None = None,
        intensity_pct: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Upload a song (a path or an open binary file) and return the queued job."""
        form = _form(target_lufs=target_lufs, genre=genre, intensity_pct=intensity_pct)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if isinstance(audio, (str, Path)):
            with open(audio, "rb") as f:
                return self.submit(
                    f,
                    filename=filename or Path(audio).name,
                    target_lufs=target_lufs,
                    genre=genre,
                    intensity_pct=intensity_pct,
                    idempotency_key=idempotency_key,
                )
        files = {"file": (filename or "upload", audio)}
        response = self._request("POST", "/v1/jobs", files=files, data=form, headers=headers)
        return response.json()  # type: ignore[no-any-return]

    def job(self, job_id: str) -> Job:
        return self._request("GET", f"/v1/jobs/{job_id}").json()  # type: ignore[no-any-return]

    def jobs(self, *, state: str | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job of the tenant, newest first (pages fetched as needed)."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if state:
                params["state"] = state
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/v1/jobs", params=params).json()
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 900.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Follow the job's event stream until it is ``done`` or ``failed``; return it.
        ``on_progress`` sees every update. Raises TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with self._http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=self._headers,
                    timeout=httpx.Timeout(10.0, read=30.0),
                ) as stream:
                    if stream.status_code >= 400:
                        stream.read()
                        raise _error(stream)
                    for job in _events(stream.iter_lines()):
                        if on_progress:
                            on_progress(job)
                        if job.get("done"):
                            return job
            except httpx.TransportError:
                time.sleep(1.0)  # the stream broke (a gateway restart): follow it again
        raise TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")

    # -- batches -----------------------------------------------------------------------------

    def submit_batch(
        self,
        paths: list[str | Path],
        *,
        name: str = "",
        target_lufs: float | None = None,
        genre: str | None = None,
        intensity_pct: float | None = None,
    ) -> dict[str, Any]:
        """Upload many songs as one batch (one request); return the batch."""
        form = _form(name=name, target_lufs=target_lufs, genre=genre, intensity_pct=intensity_pct)
        with contextlib.ExitStack() as stack:
            files = [("files", (Path(p).name, stack.enter_context(open(p, "rb")))) for p in paths]
            response = self._request("POST", "/v1/batches", files=files, data=form)
        return response.json()  # type: ignore[no-any-return]

    def import_batch(self, prefix: str, *, name: str = "", **options: Any) -> dict[str, Any]:
        """A batch of the objects under ``prefix`` of your import area in the bucket (S3
        deployments); ``options`` as for :meth:`submit` (``target_lufs``, ``genre``...)."""
        body = {"prefix": prefix, "name": name, **options}
        return self._request("POST", "/v1/batches/import", json=body).json()  # type: ignore[no-any-return]

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/batches/{batch_id}").json()  # type: ignore[no-any-return]

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout_s: float = 24 * 3600.0,
        poll_s: float = 5.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the batch until every file has finished; return it (a ``batch.done`` webhook
        saves the polling). Raises TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self.batch(batch_id)
            if on_progress:
                on_progress(batch)
            if batch["done"]:
                return batch
            if time.monotonic() >= deadline:
                raise TimeoutError(f"batch {batch_id} did not finish within {timeout_s:g} s")
            time.sleep(poll_s)

    def manifest(self, batch_id: str) -> list[dict[str, Any]]:
        """One row per file: job, state, error and the download URL of each version."""
        return self._request("GET", f"/v1/batches/{batch_id}/manifest").json()["items"]  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> Job:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()  # type: ignore[no-any-return]

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def report(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}/report").json()  # type: ignore[no-any-return]

    def download(
        self, job_id: str, version: str, dest: str | Path, *, format: str = "wav24"
    ) -> Path:
        """Save one version's audio to ``dest`` (streamed) and return the path."""
        return self._save(f"/v1/jobs/{job_id}/outputs/{version}", {"format": format}, dest)

    def archive(self, job_id: str, dest: str | Path, *, format: str = "wav24") -> Path:
        """Save the ZIP of every version (and the report) to ``dest``."""
        return self._save(f"/v1/jobs/{job_id}/archive", {"format": format}, dest)

    def render(
        self, job_id: str, params: dict[str, float | str], *, base: str = "strategy"
    ) -> dict[str, Any]:
        """Render an edit of a finished job's ``base`` version as a new version (``user-N``);
        the answer has its ``name`` and download ``url``."""
        body = {"base": base, "params": params}
        return self._request("POST", f"/v1/jobs/{job_id}/renders", json=body).json()  # type: ignore[no-any-return]

    def preview(
        self,
        job_id: str,
        params: dict[str, float | str],
        *,
        base: str = "strategy",
        start_s: float = 0.0,
        duration_s: float = 20.0,
    ) -> bytes:
        """An excerpt of the edit rendered and returned as 24-bit WAV bytes (nothing stored)."""
        body = {
            "base": base,
            "params": params,
            "preview": {"start_s": start_s, "duration_s": duration_s},
        }
        return self._request("POST", f"/v1/jobs/{job_id}/renders", json=body).content

    def _save(self, path: str, params: dict[str, str], dest: str | Path) -> Path:
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with self._http.stream("GET", path, params=params, headers=self._headers) as stream:
            if stream.status_code >= 400:
                stream.read()
                raise _error(stream)
            with open(part, "wb") as f:
                for chunk in stream.iter_bytes(1 << 20):
                    f.write(chunk)
        part.replace(target)
        return target

    # -- account ---------------------------------------------------------------------------

    def usage(self, month: str | None = None) -> dict[str, Any]:
        params = {"month": month} if month else {}
        return self._request("GET", "/v1/usage", params=params).json()  # type: ignore[no-any-return]

    def create_webhook(
        self, url: str, events: list[str] | None = None, description: str = ""
    ) -> dict[str, Any]:
        """Register an endpoint; the answer's ``secret`` is shown only this once."""
        body: dict[str, Any] = {"url": url, "description": description}
        if events is not None:
            body["events"] = events
        return self._request("POST", "/v1/webhooks", json=body).json()  # type: ignore[no-any-return]

    def webhook_deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]  # type: ignore[no-any-return]


def _form(**values: object) -> dict[str, str]:
    """Form fields of the options given (None and "" are left to the server's defaults)."""
    return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]), body)
    except (ValueError, KeyError, TypeError):
        text = response.text[:200]
        return ApiError(response.status_code, "http_error", text or response.reason_phrase, {})


def _events(lines: Iterator[str]) -> Iterator[Job]:
    """The job objects of a server-sent event stream."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])
