"""The viewer in a real browser, for tests/integration/test_view_*.py (issue 18).

`serve(app)` runs a FastAPI app with uvicorn on a free loopback port in a thread;
`browser()` starts headless Chromium through Selenium (the Debian `chromium` and
`chromium-driver`). The `viewer` fixture joins them: `viewer(app)` gives a `Viewer` that
opens pages, waits for them, and takes screenshots into the test's tmp_path and, when
TESTTIME_VIEW_SHOTS=DIR is set, into DIR too (how docs/img/view/ is made:
`TESTTIME_VIEW_SHOTS=docs/img/view pytest tests/integration/test_view_*.py`).
Without chromium or chromedriver the tests FAIL with the install hint; set
TESTTIME_NO_BROWSER_TESTS=1 to leave them out on a machine that cannot have them.

Use it from a test module with `from viewer_browser import Viewer, viewer  # noqa: F401`.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = (
    "the viewer's browser tests need headless Chromium and its driver: "
    "apt-get install chromium chromium-driver (or set TESTTIME_NO_BROWSER_TESTS=1 where they "
    "cannot be installed)"
)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """A uvicorn server on 127.0.0.1 in a thread; `url` is its base (no trailing slash)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the viewer did not start on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or the test fails with the install hint (or skips where
    TESTTIME_NO_BROWSER_TESTS=1)."""
    if os.environ.get("TESTTIME_NO_BROWSER_TESTS") == "1":
        pytest.skip("TESTTIME_NO_BROWSER_TESTS=1: browser tests left out")
    found = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    chromium = next((p for p in found if p and Path(p).is_file()), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    if chromium is None or driver is None:
        missing = "chromium" if chromium is None else "chromedriver"
        pytest.fail(f"no {missing} found; {INSTALL_HINT}")
    return chromium, driver


def browser(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


class Viewer:
    """A served app and a browser on it."""

    def __init__(self, served: Served, driver: Any, shots: Path) -> None:
        self.served = served
        self.driver = driver
        self.shots = shots

    @property
    def url(self) -> str:
        return self.served.url

    def open(self, path: str, timeout: float = 20) -> Any:
        """Open a page and wait until its script says it is ready (body[data-ready], set by
        common.js when the page's loader has finished, or at load where it has none); the
        driver is returned for finding elements."""
        self.driver.get(self.url + path)
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === '1'"), timeout)
        return self.driver

    def wait(self, until: Callable[[Any], Any], timeout: float = 20) -> Any:
        """Wait until `until(driver)` is truthy; its value is returned."""
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(until)

    def css(self, selector: str) -> Any:
        """The first element matching a CSS selector (fails if none)."""
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        """Every element matching a CSS selector."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def text(self, selector: str) -> str:
        return str(self.css(selector).text)

    def error(self) -> str:
        """The page's error box text ('' when hidden or absent)."""
        boxes = [b for b in self.all("#error") if b.is_displayed()]
        return str(boxes[0].text) if boxes else ""

    def screenshot(self, name: str) -> Path:
        """Save the whole page as NAME.png in the test's folder (and TESTTIME_VIEW_SHOTS)."""
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, min(max(int(height) + 140, 600), 4000))
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        extra = os.environ.get("TESTTIME_VIEW_SHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / path.name)
        return path


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[Callable[[Any], Viewer]]:
    """`viewer(app)`: serve `app` and open a headless browser on it; both end with the test.
    One browser per test (a fresh one starts in about a second)."""
    browser_paths()  # fail (or skip) before anything starts
    started: list[tuple[Served, Any]] = []

    def make(app: Any) -> Viewer:
        served = Served(app)
        try:
            driver = browser()
        except Exception:
            served.stop()
            raise
        started.append((served, driver))
        return Viewer(served, driver, tmp_path)

    yield make
    for served, driver in started:
        driver.quit()
        served.stop()
