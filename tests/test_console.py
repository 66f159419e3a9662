"""The web console at /ui, in a real browser (Debian's headless Chromium through selenium) against a real
``ge2e serve`` with the bundled model and real speech: key entry, enrollment of two LibriSpeech speakers, verify
(accept and reject), diarization and speaker search, the same regions as the CLI, and tenant isolation.

Screenshots go to ``test-artefacts/console/`` (git-ignored), to be looked at."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from conftest import REPO, _missing, require_tool
from conversation import build
from ge2e.cli import main
from ge2e.diarization import read_rttm
from serve_server import ServerProcess
from test_serve_security import add_key

ARTEFACTS = REPO / "test-artefacts" / "console"
WAIT_S = 60  # one embedding on a busy 2-core machine


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    tmp = tmp_path_factory.mktemp("console")
    db = tmp / "db.sqlite"
    keys = {"a": add_key(db, "a", "admin"), "b": add_key(db, "b", "admin")}
    enroll, meeting, _ = build(data_root, tmp)
    server = ServerProcess(["--db", str(db)], "", tmp / "server.log")  # the bundled model, default limits
    yield server, keys, enroll, meeting, tmp
    server.stop()


def test_console_is_served_with_a_strict_policy_and_no_inline_script(setup) -> None:
    server = setup[0]
    r = httpx.get(f"{server.url}/ui", follow_redirects=True)
    assert r.status_code == 200 and str(r.url).endswith("/ui/")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"<script(?![^>]*\ssrc=)", r.text), "inline script"
    assert not re.search(r"\sstyle=|\son[a-z]+=", r.text), "inline style or handler"
    for name in ("console.js", "console.css"):
        asset = httpx.get(f"{server.url}/ui/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy
    assert "/ui/" not in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_search_and_diarize_routes_keep_tenants_apart(setup) -> None:
    server, keys, enroll, meeting, _ = setup
    audio = meeting.read_bytes()
    a = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['a']}"}, timeout=WAIT_S)
    b = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['b']}"}, timeout=WAIT_S)
    assert a.post("/v1/speakers", json={"id": "carol", "name": "Carol"}).status_code == 201
    assert a.post("/v1/speakers/carol/enrollments", content=enroll["alice"][0].read_bytes()).status_code == 201
    assert b.post("/v1/speakers/carol/search", content=audio).json()["error"]["code"] == "speaker_not_found"
    assert httpx.post(f"{server.url}/v1/diarize", content=audio).status_code == 401
    found = a.post("/v1/speakers/carol/search", content=audio)
    assert found.status_code == 200 and found.json()["regions"], found.text
    r = a.post("/v1/diarize?num_speakers=2&max_speakers=3", content=audio)
    assert r.status_code == 422 and "not both" in r.json()["error"]["message"]
    assert a.delete("/v1/speakers/carol").status_code == 204


def browser():
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium is not installed (pip install 'ge2e[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1700"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(require_tool("chromedriver")))


def test_console_in_chromium(setup) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, keys, enroll, meeting, tmp = setup
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser()
    find = lambda css: driver.find_element(By.CSS_SELECTOR, css)  # noqa: E731

    def wait_text(css: str, pattern: str) -> str:
        WebDriverWait(driver, WAIT_S).until(lambda d: re.search(pattern, find(css).text))
        return find(css).text

    def upload(css: str, paths) -> None:
        driver.execute_script("arguments[0].value = ''", find(css))
        find(css).send_keys("\n".join(str(p) for p in paths))

    try:
        driver.get(f"{server.url}/ui")
        find("#key").send_keys(keys["a"])
        find("#use-key").click()
        wait_text("#status", r"Key accepted: 0 speaker")
        assert driver.execute_script("return localStorage.length") == 0  # not asked to remember it

        for name in ("alice", "bob"):
            find("#enroll-id").clear()
            find("#enroll-id").send_keys(name)
            find("#enroll-name").clear()
            find("#enroll-name").send_keys(name.title())
            upload("#enroll-files", enroll[name])
            find("#enroll").click()
            wait_text("#enroll-result", rf"{name.title()}: 2 utterance\(s\) added")
        wait_text("#status", r"2 speaker")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#speakers tbody tr")) == 2

        # verify: alice's own clip (not enrolled) is accepted, bob's rejected
        clips = {n: enroll[n][0].with_name(enroll[n][0].name.replace("0000", "0007")) for n in enroll}
        Select(find("#verify-speaker")).select_by_value("alice")
        upload("#verify-file", [clips["bob"]])
        find("#verify").click()
        wait_text("#verify-result", r"^reject score")
        upload("#verify-file", [clips["alice"]])
        find("#verify").click()
        wait_text("#verify-result", r"^accept score")
        driver.save_screenshot(str(ARTEFACTS / "verify.png"))

        upload("#diarize-file", [meeting])
        find("#diarize-count").send_keys("2")
        find("#diarize").click()
        wait_text("#diarize-result", r"2 speaker")
        assert not find("#diarize-rttm").get_attribute("hidden")

        Select(find("#search-speaker")).select_by_value("bob")
        upload("#search-file", [meeting])
        find("#search").click()
        wait_text("#search-result", r"bob: [1-9]\d* region")
        driver.execute_script("document.getElementById('diarize-card').scrollIntoView()")
        driver.save_screenshot(str(ARTEFACTS / "timelines.png"))

        # the same regions as the command line for the same files
        blocks = driver.find_elements(By.CSS_SELECTOR, "#search-regions .block")
        shown = [(float(b.get_attribute("data-start")), float(b.get_attribute("data-end"))) for b in blocks]
        rttm = tmp / "bob.rttm"
        assert main(["search", "--enroll", *map(str, enroll["bob"]), "--in", str(meeting), "--out", str(rttm)]) == 0
        assert shown == [
            (pytest.approx(s.start, abs=1e-3), pytest.approx(s.end, abs=1e-3)) for s in read_rttm(rttm)["meeting"]
        ]
        turns = driver.find_elements(By.CSS_SELECTOR, "#diarize-timeline .block")
        shown = sorted((float(b.get_attribute("data-start")), float(b.get_attribute("data-end"))) for b in turns)
        hyp = tmp / "meeting.rttm"
        assert main(["diarize", str(meeting), "--num-speakers", "2", "--out", str(hyp)]) == 0
        cli = sorted((s.start, s.end) for s in read_rttm(hyp)["meeting"])
        assert shown == [(pytest.approx(a, abs=1e-3), pytest.approx(b, abs=1e-3)) for a, b in cli]

        # tenant b's key sees none of tenant a's speakers; remembered only when asked
        find("#key").clear()
        find("#key").send_keys(keys["b"])
        find("#remember").click()
        find("#use-key").click()
        wait_text("#status", r"Key accepted: 0 speaker")
        assert driver.find_elements(By.CSS_SELECTOR, "#speakers tbody tr") == []
        assert driver.find_elements(By.CSS_SELECTOR, "#search-speaker option, #verify-speaker option") == []
        assert driver.execute_script("return localStorage.getItem('ge2e-console-key')") == keys["b"]
        find("#forget").click()
        assert driver.execute_script("return localStorage.length") == 0
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not [e for e in logs if "Content Security Policy" in e["message"]], logs
    finally:
        driver.save_screenshot(str(ARTEFACTS / "last.png"))
        driver.quit()
