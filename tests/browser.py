"""Headless Chromium for the browser tests (public dashboard, Superset), through Selenium.

Chromium and its driver come from Debian's packages (`make chromium` installs them; CI does it
first). A browser test that cannot find them fails and says how to install them: under CI always,
locally unless CIVIC_SKIP_BROWSER_TESTS=1 asks to skip. Screenshots go to build/screenshots/.

Use the `chromium` fixture (import it into the test module: `from browser import chromium`), or
`headless_chromium()` as a context manager, then `wait_for()`, `save_screenshot()`,
`console_errors()` and, for a phone's screen, `emulate_viewport()`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "build" / "screenshots"
SKIP_VARIABLE = "CIVIC_SKIP_BROWSER_TESTS"
INSTALL_HINT = "install them with `make chromium` (apt-get install -y chromium chromium-driver)"

# The flags the project starts Chromium with: no GPU, no sandbox (CI runs as root), and nothing
# that phones home, so a page that needs the internet fails here as it would for a resident offline.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)

T = TypeVar("T")


def chromium_paths() -> tuple[str, str]:
    """The Chromium binary and chromedriver, or a test failure (or skip) saying what is missing."""
    binary = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver)) if not path]
    if missing:
        message = f"browser tests need {' and '.join(missing)} on PATH: {INSTALL_HINT}"
        if os.environ.get(SKIP_VARIABLE) == "1" and os.environ.get("CI") != "true":
            pytest.skip(f"{message} ({SKIP_VARIABLE}=1)")
        pytest.fail(f"{message}; or set {SKIP_VARIABLE}=1 to skip them outside CI", pytrace=False)
    return binary, driver


# Every host name but 127.0.0.1 fails to resolve: a page served locally that reaches for anything
# on the internet (a CDN, a web font) fails to load it, as on a network without the internet.
OFFLINE_FLAG = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


@contextmanager
def headless_chromium(
    width: int = 1400, height: int = 1000, flags: Sequence[str] = ()
) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with the project's flags and ``flags``; quits on exit."""
    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    with headless_chromium() as driver:
        yield driver


def wait_for(
    driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], T], what: str, timeout=60.0
) -> T:
    """Wait until condition(driver) is truthy; on time-out, fail naming what never happened."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        shot = save_screenshot(driver, "timeout")
        pytest.fail(
            f"{what}: not true after {timeout:.0f}s on {driver.current_url} (screenshot {shot})",
            pytrace=False,
        )


def save_screenshot(driver: webdriver.Chrome, name: str, full_page: bool = True) -> Path:
    """A PNG of the page under build/screenshots/<name>.png; the whole page unless full_page=False."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    if full_page:
        size = driver.get_window_size()
        height = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        driver.set_window_size(size["width"], max(int(height), size["height"]))
        driver.save_screenshot(str(path))
        driver.set_window_size(size["width"], size["height"])
    else:
        driver.save_screenshot(str(path))
    return path


def emulate_viewport(
    driver: webdriver.Chrome, width: int, height: int, timezone: str | None = None
) -> None:
    """Lay pages out in a phone's viewport of width x height CSS pixels (a headless window is never
    narrower than 500 px), optionally in another time zone; through Chromium's DevTools protocol."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )
    if timezone:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": timezone})


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Messages the page logged at SEVERE level (script errors, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
