"""Pictures of pages in headless Chromium, through Selenium: the run report's screenshot that
the README links (``publish``), and the explorer's in the browser test.

    reason = missing()                         # None, or why no browser can start here
    with browser(width=1400, height=2400) as driver:
        driver.get(page.as_uri())
        save_screenshot(driver, "docs/report-screenshot.png")

The browser and its driver are the system's (Debian: ``apt-get install chromium
chromium-driver``), named explicitly, so Selenium Manager never tries to download either.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actadd.io import atomic_write

# Headless, as root (no sandbox), no GPU, and none of Chromium's background connections
# (updates, sync, field trials), which a closed network refuses or leaves hanging.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL = "apt-get install chromium chromium-driver (Debian) and pip install selenium (the dev extra)"


def chromium() -> str | None:
    """The Chromium binary on PATH (Debian's ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromedriver() -> str | None:
    """The ChromeDriver on PATH (Debian's ``chromium-driver`` installs ``chromedriver``), or None."""
    return shutil.which("chromedriver")


def missing() -> str | None:
    """Why no browser can be started here (for a skip or a log line), or None when one can."""
    absent = [
        name
        for name, found in (
            ("selenium", importlib.util.find_spec("selenium") is not None),
            ("chromium", chromium() is not None),
            ("chromedriver", chromedriver() is not None),
        )
        if not found
    ]
    return f"{', '.join(absent)} not found: {INSTALL}" if absent else None


@contextmanager
def browser(*, width: int = 1400, height: int = 2400) -> Iterator[Any]:
    """A headless Chromium WebDriver whose page is ``width`` x ``height`` pixels, with a fresh
    profile folder; quit (and the folder removed) on the way out."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="actadd-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(chromium())
        for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        # A driver path given to the Service is what keeps Selenium Manager from running.
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(chromedriver())))
        try:
            # The window's size includes the browser's frame; the page is given exactly this one.
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            yield driver
        finally:
            driver.quit()


def save_screenshot(driver: Any, path: str | Path) -> Path:
    """The window's contents as a PNG at ``path``, written atomically."""
    png = driver.get_screenshot_as_png()
    return atomic_write(path, lambda tmp: tmp.write_bytes(png))


def page_screenshot(page: str | Path, path: str | Path, *, width: int = 1400, height: int = 2400) -> Path:
    """A local HTML file (``report.html``) rendered and saved as a PNG of its top ``height`` pixels."""
    with browser(width=width, height=height) as driver:
        driver.get(Path(page).resolve().as_uri())
        return save_screenshot(driver, path)
