"""The example page in a real headless Chromium, driven by Selenium."""

from __future__ import absolute_import, unicode_literals

import os
import shutil
import sys
import tempfile

import pytest

from flask_example import lifecycle_order, start_flask_server, start_rq_worker
from servers import RedisServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sys.version_info < (3, 8),
                       reason="Selenium 4 needs Python 3.8 or later"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Seconds to wait for a job's final event on the page.
PAGE_TIMEOUT = 30


@pytest.fixture(scope="module")
def example_url():
    """Serve the example with Redis, an rq worker and ``flask run``."""
    redis_server = RedisServer().start()
    processes = []
    try:
        processes.append(start_rq_worker(redis_server.url))
        server, port = start_flask_server(redis_server.url)
        processes.append(server)
        yield "http://127.0.0.1:%d/" % port
    finally:
        for process in processes:
            process.cleanup()
        redis_server.cleanup()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.skip("%s is missing: make test installs chromium and "
                        "chromium-driver with apt-get" % path)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="job-notifier-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--window-size=1000,760", "--user-data-dir=%s" % profile):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text_of(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def event_rows(driver):
    """Return (event, source, details) of each row of the events table."""
    from selenium.webdriver.common.by import By

    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#events tr[data-event]"):
        cells = row.find_elements(By.TAG_NAME, "td")
        rows.append((cells[1].text, cells[2].text, cells[3].text))
    return rows


def run_job(driver, url, seconds, fail=False):
    """Fill in the form, click "Run job" and wait for the final event."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    field = driver.find_element(By.ID, "seconds")
    field.clear()
    field.send_keys(str(seconds))
    if fail:
        driver.find_element(By.ID, "fail").click()
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, PAGE_TIMEOUT).until(
        lambda driver: text_of(driver, "status") in ("finished", "failed"))


def test_page_shows_job_finish_live(browser, example_url, tmp_path):
    run_job(browser, example_url, seconds=1)
    screenshot = str(tmp_path / "finished.png")
    browser.save_screenshot(screenshot)

    assert text_of(browser, "status") == "finished"
    assert text_of(browser, "result") == "5"
    rows = event_rows(browser)
    assert lifecycle_order(event for event, _, _ in rows) == [
        "enqueue", "dequeue", "finished"]
    assert [source for _, source, _ in rows] == ["live"] * 3
    assert "result 5" in rows[-1][2]
    assert os.path.getsize(screenshot) > 0


def test_page_shows_job_failure(browser, example_url):
    run_job(browser, example_url, seconds=0.2, fail=True)

    assert text_of(browser, "status") == "failed"
    assert text_of(browser, "result") == (
        "ValueError: failed on purpose after 0.2 seconds")
    assert lifecycle_order(event for event, _, _ in event_rows(browser)) == [
        "enqueue", "dequeue", "failed"]
