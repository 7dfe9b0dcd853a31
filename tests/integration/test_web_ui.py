"""The web UI in a real browser: Debian's Chromium driven by Playwright against `mixpilot serve`
started as a process (API keys on, so the page's key prompt is exercised too).

One walk through what a first-time user does: give the key, drop a generated song, watch it
finish, read the analysis and its pictures, compare A and B while playing (the playhead is kept
across the switch), move a slider and hear a new preview spliced in without playback stopping,
render the edit in full, record a preference and download a FLAC that decodes. A rejected file
shows its error; at a phone's width nothing overflows; the page makes no request to anything
but the gateway and logs no console error. A screenshot of each step goes to
``test-artifacts/web-ui/`` (``MIXPILOT_TEST_ARTIFACTS`` moves it)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.cluster import create_api_key
from tests.infra import serve_process
from tests.signals import little_song

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = Path(os.environ.get("MIXPILOT_TEST_ARTIFACTS", "test-artifacts")) / "web-ui"
SR = 44100
SONG_S = 30.0

DROP = """([b64, name, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type }));
    return dt;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("web-ui")
    key = create_api_key(f"sqlite:///{tmp / 'jobs.sqlite3'}", "listener", plan="standard")
    with serve_process(tmp, auth="api_key", log_level="WARNING") as (_, base, _log):
        yield {"base": base, "key": key}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install.sh --test installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    outside: list[str] = []
    failed: list[tuple[int, str]] = []

    def console(message: Any) -> None:
        # Chromium logs every 4xx answer as "Failed to load resource"; those are checked as
        # answers (``failed``), so that only the ones a test provoked are allowed.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: (
            failed.append((r.status, r.url.split("?")[0].replace(server["base"], "")))
            if r.status >= 400
            else None
        ),
    )

    def check_request(request: Any) -> None:
        if not request.url.startswith((server["base"], "data:", "blob:")):
            outside.append(request.url)

    page.on("request", check_request)
    page.problems = problems
    page.outside = outside
    page.failed = failed
    yield page
    context.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _flac(audio: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.T, sr, format="FLAC")
    return buf.getvalue()


def _drop(page: Any, data: bytes, name: str, mime: str = "audio/flac") -> None:
    transfer = page.evaluate_handle(DROP, [base64.b64encode(data).decode(), name, mime])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def _state(page: Any, expression: str) -> Any:
    """``expression`` evaluated in the page with ``p`` the player and ``s`` the page state."""
    scope = "const p = window.mixpilot.player; const s = window.mixpilot.state;"
    return page.evaluate(f"(() => {{ {scope} return {expression}; }})()")


def test_from_dropping_a_song_to_downloading_an_adjusted_mix(
    page: Any, server: dict[str, Any], tmp_path: Path
) -> None:
    page.goto(server["base"] + "/")
    # The server needs a key: the page asks for one, refuses a wrong one, takes the right one.
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("#key-panel:not([hidden])")
    page.fill("#key-input", "mpk_000000000000_" + "x" * 43)
    page.click("#key-form button")
    page.wait_for_function("document.getElementById('key-status').textContent.includes('refused')")
    page.fill("#key-input", server["key"])
    page.click("#key-form button")
    page.wait_for_selector("#key-panel", state="hidden")
    _shot(page, "01-start")

    # Drop a song; the row shows its progress and the song opens when it is done.
    _drop(page, _flac(little_song(sr=SR, duration_s=SONG_S)), "demo song.flac")
    page.wait_for_selector("#uploads li progress")
    page.wait_for_selector("#uploads li[data-state='done']", timeout=180_000)
    page.wait_for_selector("#job-panel:not([hidden])")
    page.wait_for_function("window.mixpilot.player && window.mixpilot.player.buffers.size >= 2")
    assert page.text_content("#job-title") == "demo song.flac"

    # The analysis, with pictures where they read better than numbers.
    analysis = page.text_content("#analysis")
    for field in ("Tempo", "Key", "Genre", "Energy", "Valence", "Danceability", "Loudness"):
        assert field in analysis
    tempo = float(page.text_content("dd[data-field='tempo']").split()[0])
    assert abs(tempo - 120.0) < 3.0
    assert page.locator("#analysis [role='meter']").count() >= 6
    page.wait_for_function(
        "(() => { const c = document.getElementById('waveform'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length;"
        " i += 4) n += d[i] > 0; return n > 0.05 * c.width * c.height; })()"
    )
    page.wait_for_function(
        "(() => { const c = document.getElementById('spectrum'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let blue = 0; for (let i = 0; i < d.length;"
        " i += 4) blue += d[i + 2] > 200 && d[i] < 80; return blue > 50; })()"
    )
    # Every version's parameters: the AI's raw value beside the refined one and the strategy's.
    headers = page.text_content("#params thead")
    assert "AI raw" in headers and "After musical context" in headers and "Strategy" in headers
    assert page.locator("#params tbody tr").count() >= 40
    # A choice parameter reads as its option's name, not its index.
    reverb = page.locator("#params tbody tr", has_text="reverb_style").inner_text()
    assert any(style in reverb for style in ("intimate", "plate", "hall", "spacious")), reverb
    assert not re.search(r"reverb_style\s+\d", reverb), reverb
    _shot(page, "02-analysis")

    # A/B while playing: the switch keeps the playhead (both run in lockstep).
    page.click("#play")
    page.wait_for_function("window.mixpilot.player.playhead() > 1.0", timeout=20_000)
    before = _state(page, "[p.playhead(), p.active, p.ctx.currentTime]")
    page.keyboard.press("x")
    after = _state(page, "[p.playhead(), p.active, p.ctx.currentTime]")
    assert before[1] == "A" and after[1] == "B"
    assert after[0] - before[0] == pytest.approx(after[2] - before[2], abs=1e-6)  # not reset
    assert 0 <= after[0] - before[0] < 0.5
    assert _state(page, "p.voices.A.source.buffer !== null && p.voices.B.gain.gain.value > 0")
    assert _state(page, "p.voices.A.gain.gain.value") == 0
    _shot(page, "03-ab")

    # Move a slider: a preview around the playhead is rendered and spliced in, playback goes on.
    swaps = _state(page, "p.swaps")
    slider = page.locator("#slider-eq_high_shelf_gain_db")
    slider.focus()
    for _ in range(30):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("window.mixpilot.state.previews >= 1", timeout=30_000)
    preview = _state(page, "s.preview")
    assert preview["durationS"] > 1.0 and preview["renderS"] > 0
    assert _state(page, "p.playing && p.slots.B === 'edit' && p.active === 'B'")
    assert _state(page, "p.swaps") > swaps  # swapped in while playing
    edited = _state(page, "s.edits")
    assert edited["eq_high_shelf_gain_db"] > 0
    # The edit is the base with the preview spliced in: changed inside the previewed stretch,
    # the same sample for sample outside it (the audio itself is tested in the API's tests).
    inside, outside = _state(
        page,
        "(() => { const e = p.buffers.get('edit').getChannelData(0), b = p.buffers.get(s.base)"
        ".getChannelData(0), r = p.ctx.sampleRate; const a = Math.round(s.preview.startS * r),"
        " z = Math.round((s.preview.startS + s.preview.durationS) * r); let din = 0, dout = 0;"
        " for (let i = 0; i < e.length; i++) { const d = Math.abs(e[i] - b[i]);"
        " if (i >= a && i < z) din = Math.max(din, d); else dout = Math.max(dout, d); }"
        " return [din, dout]; })()",
    )
    assert inside > 0.01 and outside == 0, (inside, outside)
    _shot(page, "04-preview")

    # Render the edit in full: a new version, compared in B, and the choice recorded.
    page.click("#render-full")
    page.wait_for_function("window.mixpilot.player.slots.B === 'user-1'", timeout=60_000)
    page.click("#prefer-b")
    page.wait_for_function(
        "document.getElementById('prefer-note').textContent.includes('prefer B')"
    )
    job_id = _state(page, "s.job.job_id")
    prefs = httpx.get(
        f"{server['base']}/v1/preferences",
        params={"job_id": job_id},
        headers={"Authorization": f"Bearer {server['key']}"},
    ).json()["items"]
    assert {p["chosen"] for p in prefs} == {"user-1"}
    assert all("eq_high_shelf_gain_db" in p["edited"] for p in prefs)
    _shot(page, "05-rendered")

    # Export the new version as FLAC: it decodes to the song's length and rate.
    page.select_option("#export-version", "user-1")
    page.select_option("#export-format", "flac")
    with page.expect_download() as download:
        page.click("#download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "demo song-user-1.flac"
    info = sf.info(path)
    assert info.samplerate == SR and info.frames == int(SONG_S * SR) and info.format == "FLAC"

    # A file that is not audio is rejected with its reason, and nothing else breaks.
    _drop(page, b"these are liner notes, not audio" * 50, "notes.txt", "text/plain")
    page.wait_for_selector("#uploads li[data-state='error']")
    error = page.text_content("#uploads li[data-state='error'] .error")
    assert "notes.txt" in error and "not a readable audio file" in error
    _shot(page, "06-rejected")

    # At a phone's width nothing overflows sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    time.sleep(0.3)
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right"
        " > window.innerWidth + 1 && !e.closest('.table-wrap')).map((e) => e.tagName + '#' + e.id"
        " + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    assert wide == [], wide
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _shot(page, "07-narrow")

    assert page.problems == [], page.problems
    assert page.outside == [], page.outside
    # The only errors answered: the key check before a key was given and with the wrong key,
    # and the file that is not audio.
    assert sorted(page.failed) == [(401, "/v1/jobs"), (401, "/v1/jobs"), (415, "/v1/jobs")]


def test_the_drop_zone_and_the_player_work_from_the_keyboard(
    page: Any, server: dict[str, Any]
) -> None:
    # A returning listener: the key is remembered (set before the page loads).
    page.add_init_script(f"localStorage.setItem('mixpilot.apiKey', {json.dumps(server['key'])})")
    choosers: list[Any] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))  # intercepted from the start
    page.goto(server["base"] + "/")
    page.wait_for_selector("body[data-ready='true']")
    assert page.is_hidden("#key-panel")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while not choosers and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(choosers) == 1 and choosers[0].is_multiple()
    choosers[0].set_files(
        files=[
            {
                "name": "keys.flac",
                "mimeType": "audio/flac",
                "buffer": _flac(little_song(sr=SR, duration_s=6.0)),
            }
        ]
    )
    page.wait_for_function(
        "window.mixpilot.player && window.mixpilot.player.buffers.size >= 2", timeout=180_000
    )
    page.focus("body")
    page.keyboard.press(" ")
    page.wait_for_function("window.mixpilot.player.playing")
    page.keyboard.press("b")
    assert _state(page, "p.active") == "B"
    page.keyboard.press("l")
    assert _state(page, "p.matched") is False
    page.keyboard.press(" ")
    page.wait_for_function("!window.mixpilot.player.playing")
    assert page.problems == [] and page.failed == [] and page.outside == []
