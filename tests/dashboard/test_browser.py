"""The dashboard in a real headless Chromium: log in, find a failure, replay it.

Drives Debian's ``chromium`` through the system ``chromedriver`` with
Selenium (never Selenium Manager: the driver path is given and
``SE_OFFLINE`` is set). The app is the seeded shop, served on a loopback
port by werkzeug in a thread. The pages must log no console error (the
Content-Security-Policy would log one for any script or inline style it
blocked) and a hostile payload must not run. The test takes screenshots of
the real pages; ``make screenshots`` keeps them in ``docs/_static/`` for
``docs/dashboard.rst`` (``HOOKS_SCREENSHOTS`` names the folder), and any
other run leaves the checkout as it was.

Without chromium or chromedriver the test is skipped, except under CI
(``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from tests.dashboard.shop import HOSTILE_ID, PASSWORD, Shop, make_shop, seed_day

pytestmark = pytest.mark.slow

DRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
TIMEOUT = 15


def _missing(what: str) -> None:
    message = f"{what}; install it with `apt-get install -y chromium chromium-driver` (make test does)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: the browser test must run under CI")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (.venv/bin/pip install selenium)")
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("chromium is not installed")
    if not os.access(DRIVER, os.X_OK):
        _missing(f"{DRIVER} is not installed")
    monkeypatch.setenv("SE_OFFLINE", "1")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=DRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.set_script_timeout(TIMEOUT)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Shop, str]]:
    shop = make_shop(str(tmp_path / "instance"))
    seed_day(shop)
    server = make_server("127.0.0.1", 0, shop.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield shop, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def _problems(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]


def _shot(driver: Any, name: str, scratch: Path) -> None:
    folder = Path(os.environ.get("HOOKS_SCREENSHOTS") or scratch)
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / name))


def test_operator_finds_a_failure_and_replays_it(
    browser: Any, served: tuple[Shop, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    shop, base = served
    wait = WebDriverWait(browser, TIMEOUT)
    seen: list[dict[str, Any]] = []

    def settle(check: str) -> None:
        wait.until(ec.presence_of_element_located((By.TAG_NAME, "main")))
        problems = _problems(browser)
        seen.extend(problems)
        assert not problems, f"console errors on {check}: {problems}"
        assert browser.execute_script("return window.pwned") is None, f"a payload ran on {check}"

    browser.get(base + "/hooks/")
    assert "not allowed" in browser.find_element(By.TAG_NAME, "body").text  # not logged in: 403
    _problems(browser)  # the 403 itself is logged as a failed resource; not a page problem

    browser.get(base + "/login")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait.until(ec.presence_of_element_located((By.ID, "deliveries")))
    settle("the list")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")) == 50
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.o-received")
    _shot(browser, "dashboard-list.png", tmp_path)

    # The hostile delivery is listed as text, and its own page runs nothing either.
    [link] = [a for a in browser.find_elements(By.CSS_SELECTOR, "a.delivery-link") if a.text == HOSTILE_ID]
    link.click()
    wait.until(ec.presence_of_element_located((By.ID, "payload")))
    settle("the hostile delivery")
    assert "<script>window.pwned=1</script>" in browser.find_element(By.ID, "payload").text
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")

    # Filter to failed deliveries: the three order.paid ones.
    shop.bug.fixed = True  # the operator deployed the fix
    browser.get(base + "/hooks/")
    Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
    browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait.until(lambda d: "status=failed" in d.current_url)
    settle("the failed list")
    rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, ".status").text for r in rows] == ["failed"] * 3
    assert all("billing.invoice" in r.text for r in rows)
    rows[0].find_element(By.CSS_SELECTOR, "a.delivery-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "attempts")))
    settle("a failed delivery")
    assert browser.find_element(By.ID, "status").text == "failed"
    assert "KeyError: 'customer'" in browser.find_element(By.ID, "attempts").text
    failed_id = urlsplit(browser.current_url).query
    _shot(browser, "dashboard-delivery.png", tmp_path)

    browser.find_element(By.ID, "replay").click()
    wait.until(ec.presence_of_element_located((By.ID, "confirm")))
    settle("the confirmation")
    browser.find_element(By.ID, "confirm").click()
    wait.until(ec.presence_of_element_located((By.ID, "notice")))
    settle("the replay's result")
    assert browser.find_element(By.ID, "status").text == "received"
    assert "Replayed: the delivery is now received." in browser.find_element(By.ID, "notice").text
    assert failed_id in browser.current_url
    assert [c[1] for c in shop.bug.calls][-1] is True  # the handler saw event.replayed
    _shot(browser, "dashboard-replayed.png", tmp_path)

    browser.get(base + "/hooks/?status=failed")
    settle("the failed list after the replay")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr .status")) == 2
    assert not seen


def test_an_id_with_runs_of_blanks_is_copied_as_it_is(browser: Any, tmp_path: Path) -> None:
    # HTML collapses runs of spaces: an operator selecting "ord  1" on the page copied "ord 1".
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shop = make_shop(str(tmp_path / "instance"))
    ids = ["ord  1", "ord   2  b"]
    for id in ids:
        assert shop.post({"id": id, "type": "order.created"}).status_code == 200
    server = make_server("127.0.0.1", 0, shop.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    select = (
        "const range = document.createRange(); range.selectNodeContents(arguments[0]);"
        " const s = window.getSelection(); s.removeAllRanges(); s.addRange(range); return s.toString();"
    )
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        browser.get(base + "/login")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        WebDriverWait(browser, TIMEOUT).until(ec.presence_of_element_located((By.ID, "deliveries")))
        codes = [
            link.find_element(By.TAG_NAME, "code")
            for link in browser.find_elements(By.CSS_SELECTOR, "a.delivery-link")
        ]
        assert sorted(browser.execute_script(select, code) for code in codes) == sorted(ids)
        browser.get(base + "/hooks/delivery?receiver=hooks&id=ord%20%201")
        assert browser.execute_script(select, browser.find_element(By.CSS_SELECTOR, "h1 code")) == "ord  1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
