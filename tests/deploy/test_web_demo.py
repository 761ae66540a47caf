"""The web page in real headless Chromium (Debian's chromium + chromedriver, driven by selenium with
the driver path given, so nothing is downloaded), its microphone a fake device fed from a WAV file.

Through the page: enroll "hey jarvis", enroll "jarvis" and see the confusable warning, start the
microphone, see the "hey jarvis" detection with its score, watch the meters and metrics move, take
a screenshot, stop, delete a keyword. With auth on: the page asks for a key, enrolls and streams with
the key typed into it, and keeps the key in sessionStorage only.

Uploading a file: the page shows its detections and draws every keyword's score over time on a
canvas (issue 23); a keyword's sensitivity (FA/h) and proxy change from the keyword table.

The screenshots go to temporary files; ``OPENKWS_UPDATE_SCREENSHOT=1`` writes docs/web-demo.png
(the picture in docs/DEPLOY.md) and docs/img/web_demo.png (the upload with its plot) instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench._server import ServerProcess
from tests.deploy.conftest import ROOT, Served, ServedModel, speech_wav

SCREENSHOT = ROOT / "docs" / "web-demo.png"
UPLOAD_SCREENSHOT = ROOT / "docs" / "img" / "web_demo.png"  # the uploaded file with its score plot
UPDATE_SCREENSHOT_ENV = "OPENKWS_UPDATE_SCREENSHOT"
API_KEY_STORAGE = "openkws.apiKey"  # src/openkws/server/static/app.js
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Generous: on a loaded machine the server can fall behind the fake microphone's real time, and
# `stop` waits until the backlog (up to max_pending_seconds of audio) is decoded.
DETECTION_TIMEOUT_S = 120.0
SUMMARY_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Chromium loops the file: "hey jarvis" about every 3.5 s
    return speech_wav(tmp_path_factory.mktemp("mic") / "hey_jarvis.wav", lead_s=1.0, tail_s=1.5)


def make_driver(fake_mic: Path) -> tuple[Any, str]:
    """Headless Debian Chromium through its chromedriver (nothing downloaded): (driver, profile dir)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    driver_path = shutil.which("chromedriver") or (CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else None)
    if chromium is None or driver_path is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make setup` installs them)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never try to download a driver or browser
    profile = tempfile.mkdtemp(prefix="openkws-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1100",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(60)
    return driver, profile


@pytest.fixture(scope="module")
def browser(fake_mic: Path) -> Iterator[Any]:
    driver, profile = make_driver(fake_mic)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_server(
    served_model: ServedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """``openkws serve`` with ``OPENKWS_AUTH=on`` and one admin key: (url, key)."""
    from openkws.keywords.store import KeywordStore
    from openkws.server.auth import ApiKeys

    work = tmp_path_factory.mktemp("auth")
    data = work / "data"
    store = KeywordStore(f"sqlite:///{data / 'keywords.db'}")
    admin = ApiKeys(store).create("web", "admin", "web demo").token
    store.engine.dispose()
    srv = ServerProcess(
        served_model.path,
        data,
        work / "server.log",
        env={"OPENKWS_AUTH": "on", "OPENKWS_INFERENCE_WORKERS": "1"},
    )
    srv.start()
    try:
        srv.wait_ready()
        yield srv.url, admin
    finally:
        srv.terminate()


def screenshot_path(tmp_path: Path) -> Path:
    return SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT_ENV) == "1" else tmp_path / "web-demo.png"


def wait_until(predicate: Any, timeout: float, what: str, driver: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = ""
            if driver is not None:
                extra = "\npage status: " + driver.find_element("id", "live-status").text
                extra += "\nbrowser log: " + "\n".join(str(e) for e in driver.get_log("browser")[-20:])
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(0.2)


def enroll_in_page(driver: Any, text: str, threshold: float | None) -> None:
    box = driver.find_element("id", "kw-text")
    box.clear()
    box.send_keys(text)
    thr = driver.find_element("id", "kw-threshold")
    thr.clear()
    if threshold is not None:
        thr.send_keys(f"{threshold:g}")
    driver.find_element("id", "kw-enroll").click()
    wait_until(
        lambda: driver.find_elements("css selector", f'#kw-list tr[data-text="{text}"]'),
        30,
        f"{text!r} in the keyword table",
        driver,
    )


def test_page_enrolls_streams_and_detects(
    served: Served, browser: Any, no_keywords: None, tmp_path: Path
) -> None:
    d = browser
    d.get(served.url + "/")
    assert d.title.startswith("openkws")
    wait_until(
        lambda: d.find_element("id", "status").get_attribute("data-state") == "ready", 30, "status ready", d
    )

    thr = served.model.threshold
    enroll_in_page(d, "hey jarvis", thr)
    enroll_in_page(d, "jarvis", thr)
    warning = wait_until(
        lambda: d.find_elements("css selector", ".msg.confusable"), 10, "a confusable warning", d
    )[0]
    assert "“hey jarvis”" in warning.text and "contained in" in warning.text, warning.text

    with httpx.Client(base_url=served.url, timeout=30) as c:
        by_text = {k["text"]: k for k in c.get("/v1/keywords").json()["items"]}
    assert set(by_text) == {"hey jarvis", "jarvis"}
    row = d.find_element("css selector", '#kw-list tr[data-text="hey jarvis"]')
    assert row.get_attribute("data-keyword-id") == str(by_text["hey jarvis"]["id"])
    assert " ".join(by_text["hey jarvis"]["phonemes"]) in row.text

    d.find_element("id", "mic-start").click()
    wait_until(lambda: "Streaming" in d.find_element("id", "live-status").text, 30, "the stream to start", d)
    hit = wait_until(
        lambda: d.find_elements("css selector", '#detections li.detection[data-text="hey jarvis"]'),
        DETECTION_TIMEOUT_S,
        "a 'hey jarvis' detection in the page",
        d,
    )[0]
    score = float(hit.get_attribute("data-score"))
    threshold = by_text["hey jarvis"]["threshold"]
    assert score >= threshold
    assert f"{score:.3f}" in hit.text and "hey jarvis" in hit.text
    # the meter shows the current 50 ms chunk; the looped file has speech every ~3.5 s
    wait_until(
        lambda: float(d.find_element("id", "level-meter").get_attribute("aria-valuenow") or -60) > -60,
        15,
        "the level meter to show the fake microphone's speech",
        d,
    )
    wait_until(
        lambda: d.find_element("css selector", '.tile[data-metric="detections"] .v').text not in ("—", "0"),
        15,
        "the metrics panel to count the detection",
        d,
    )
    wait_until(
        lambda: d.find_element("css selector", '.tile[data-metric="active_streams"] .v').text == "1",
        15,
        "the metrics panel to show the open stream",
        d,
    )
    time.sleep(2.5)  # one more metrics refresh, so the rates are filled in for the picture
    shot = screenshot_path(tmp_path)
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert d.save_screenshot(str(shot)), "screenshot"

    d.find_element("id", "mic-stop").click()
    wait_until(
        lambda: "Stopped:" in d.find_element("id", "live-status").text,
        SUMMARY_TIMEOUT_S,
        "the stream summary",
        d,
    )
    assert d.find_element("id", "mic-start").is_enabled()

    # delete "jarvis" through the page
    d.find_element("css selector", '#kw-list tr[data-text="jarvis"] button.kw-delete').click()
    wait_until(
        lambda: not d.find_elements("css selector", '#kw-list tr[data-text="jarvis"]'),
        15,
        "'jarvis' to leave the table",
        d,
    )
    with httpx.Client(base_url=served.url, timeout=30) as c:
        assert [k["text"] for k in c.get("/v1/keywords").json()["items"]] == ["hey jarvis"]

    severe = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, f"errors in the browser console: {severe}"


def test_page_reports_bad_input(served: Served, browser: Any, no_keywords: None) -> None:
    """A keyword the G2P refuses gives the server's message in the page, not a silent failure."""
    d = browser
    d.get(served.url + "/")
    box = d.find_element("id", "kw-text")
    box.send_keys("日本語")
    d.find_element("id", "kw-enroll").click()
    err = wait_until(lambda: d.find_elements("css selector", ".msg.error"), 15, "an error message", d)[0]
    assert "text" in err.text and len(err.text) > 20, err.text
    assert not d.find_elements("css selector", "#kw-list tr")


def test_page_with_auth_on_uses_the_key_typed_in(
    auth_server: tuple[str, str], browser: Any, served_model: ServedModel
) -> None:
    """Auth on: without a key the page says what to do; with the key typed in, it lists, enrolls and
    streams (``bearer.<key>`` subprotocol). The key lives in sessionStorage, never localStorage."""
    url, admin = auth_server
    d = browser
    d.get_log("browser")  # drop earlier tests' entries (the bad-input test's 422)
    d.get(url + "/")
    wait_until(
        lambda: d.find_element("id", "status").get_attribute("data-state") == "ready", 30, "status ready", d
    )
    err = wait_until(lambda: d.find_elements("css selector", ".msg.error"), 15, "the 401 message", d)[0]
    assert "API key" in err.text and "API key field" in err.text, err.text

    d.find_element("id", "api-key").send_keys(admin)
    d.find_element("id", "key-use").click()
    wait_until(
        lambda: d.find_element("id", "key-state").text == "key set for this tab", 10, "the key state", d
    )
    assert d.execute_script(f"return sessionStorage.getItem('{API_KEY_STORAGE}')") == admin
    assert d.execute_script("return localStorage.length") == 0

    enroll_in_page(d, "hey jarvis", served_model.threshold)
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/v1/keywords").status_code == 401
        items = c.get("/v1/keywords", headers={"Authorization": f"Bearer {admin}"}).json()["items"]
    assert [k["text"] for k in items] == ["hey jarvis"]

    d.find_element("id", "mic-start").click()  # "Streaming" comes with the server's ready: authenticated
    wait_until(lambda: "Streaming" in d.find_element("id", "live-status").text, 30, "the stream to start", d)
    d.find_element("id", "mic-stop").click()
    wait_until(
        lambda: "Stopped:" in d.find_element("id", "live-status").text,
        SUMMARY_TIMEOUT_S,
        "the stream summary",
        d,
    )

    d.refresh()  # the key outlives a reload of this tab
    wait_until(
        lambda: d.find_elements("css selector", '#kw-list tr[data-text="hey jarvis"]'),
        30,
        "the keyword table after a reload",
        d,
    )
    d.find_element("id", "key-forget").click()
    wait_until(lambda: d.find_element("id", "key-state").text == "no key", 10, "the key to be forgotten", d)
    assert d.execute_script(f"return sessionStorage.getItem('{API_KEY_STORAGE}')") is None
    assert d.execute_script("return localStorage.length") == 0
    severe = [
        e
        for e in d.get_log("browser")
        if e.get("level") == "SEVERE" and "401 (Unauthorized)" not in e["message"]
    ]
    assert not severe, f"errors in the browser console: {severe}"


def upload_and_plot(d: Any, url: str, wav: Path, shot: Path | None = None) -> None:
    """Enroll two keywords, upload ``wav`` through the page, wait for the plot; screenshot it."""
    d.get(url + "/")
    wait_until(
        lambda: d.find_element("id", "status").get_attribute("data-state") == "ready", 60, "status ready", d
    )
    enroll_in_page(d, "hey jarvis", None)
    enroll_in_page(d, "turn on the lights", None)
    d.find_element("id", "file-input").send_keys(str(wav))
    d.find_element("id", "file-detect").click()
    wait_until(
        lambda: d.find_element("id", "trace-plot").get_attribute("data-state") == "drawn",
        DETECTION_TIMEOUT_S,
        "the score plot",
        d,
    )
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        d.execute_script("document.getElementById('file-card').scrollIntoView()")
        assert d.save_screenshot(str(shot)), "screenshot"


def test_page_uploads_a_file_plots_scores_and_changes_sensitivity_and_proxy(
    served: Served, browser: Any, no_keywords: None, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    d = browser
    d.get_log("browser")  # drop earlier tests' entries
    wav = speech_wav(tmp_path / "upload.wav", "okay, hey jarvis, what time is it", lead_s=0.5, tail_s=0.5)
    shot = UPLOAD_SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT_ENV) == "1" else tmp_path / "upload.png"
    upload_and_plot(d, served.url, wav, shot)
    plot = d.find_element("id", "trace-plot")
    assert plot.get_attribute("data-keywords") == "2"
    with httpx.Client(base_url=served.url, timeout=60) as c:
        with wav.open("rb") as f:
            res = c.post("/v1/detect", files={"file": ("upload.wav", f)}).json()
        by_text = {k["text"]: k for k in c.get("/v1/keywords").json()["items"]}
    shown = [li.get_attribute("data-text") for li in d.find_elements("css selector", "#file-detections li")]
    assert shown == [x["text"] for x in res["detections"]]  # the page lists what the API finds
    status = d.find_element("id", "file-status").text
    assert "upload.wav" in status and "Peak scores: hey jarvis" in status, status

    # sensitivity: type a rate into the row, the server sets the threshold from it (PATCH)
    kid = by_text["hey jarvis"]["id"]
    box = d.find_element("css selector", '#kw-list tr[data-text="hey jarvis"] input.sens')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("5", Keys.TAB)  # the change event fires when the field is left
    with httpx.Client(base_url=served.url, timeout=30) as c:
        wait_until(
            lambda: c.get(f"/v1/keywords/{kid}").json()["threshold"] != by_text["hey jarvis"]["threshold"],
            30,
            "the new threshold",
            d,
        )
        after = c.get(f"/v1/keywords/{kid}").json()
    if after["expected_fa_per_hour"] is not None:  # a model with a calibration bank
        assert after["expected_fa_per_hour"] == pytest.approx(5, rel=0.5)

    # proxy: choosing tts re-enrolls the same text with TTS proxies
    Select(
        d.find_element("css selector", '#kw-list tr[data-text="hey jarvis"] select.proxy')
    ).select_by_value("tts")
    with httpx.Client(base_url=served.url, timeout=30) as c:
        items = wait_until(
            lambda: [k for k in c.get("/v1/keywords").json()["items"] if k["proxy"] == "tts"],
            60,
            "a tts keyword",
            d,
        )
    assert [k["text"] for k in items] == ["hey jarvis"]
    severe = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, f"errors in the browser console: {severe}"
