"""The explorer as a JupyterLab user meets it: a real JupyterLab, a real browser (headless
Chromium through Selenium), the embedded model, and the widgets changed by typing into them."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import actadd
from actadd.studies.pipeline import screenshots

SOURCE_ROOT = Path(actadd.__file__).resolve().parents[1]  # the actadd under test, for the kernel
# Long enough for the kernel to import torch and load SmolLM2 on a busy 2-core machine; these
# are how long to wait for the page, never a claim about how fast anything is.
READY_S, COMPUTE_S = 120, 600

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
if screenshots.missing():  # no Chromium, chromedriver or selenium here: say which, and what installs it
    pytest.skip(str(screenshots.missing()), allow_module_level=True)

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

EXPLORER = """\
import actadd
from actadd.studies import explore

model = actadd.load_model()
explore(model, prompt="I went up to my friend and said", p_plus=" Love", p_minus=" Hate", layer=6, coeff=5.0,
        n_samples=1, max_new_tokens=10)
"""


@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def page(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(lab: Lab) -> bool:
    try:
        with urllib.request.urlopen(lab.page("api/status"), timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting {seconds:g} s for {what}")


@contextmanager
def jupyter_lab(root: Path, scratch: Path) -> Iterator[Lab]:
    """JupyterLab serving ``root`` on a free localhost port with a token, its config, runtime
    and IPython folders in ``scratch``; stopped with its kernels whatever happens."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(scratch / "config"),  # user settings and workspaces too
        "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
        "IPYTHONDIR": str(scratch / "ipython"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH")) if p),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",  # CI runs as root
        # Nothing that would reach past localhost: no news feed, no update check, no PyPI listing.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    # No "get notified about official Jupyter news?" toast over the page, and no fetch for it.
    settings = scratch / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    lab = Lab(f"http://127.0.0.1:{port}/", token, scratch / "jupyterlab.log")
    with lab.log.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        try:
            _wait(lambda: server.poll() is not None or _answers(lab), READY_S, "JupyterLab to answer")
            assert server.poll() is None, lab.log.read_text()[-3000:]
            yield lab
        finally:
            # Kernels run in sessions of their own: note them before the server goes.
            try:
                kernels = psutil.Process(server.pid).children(recursive=True)
            except psutil.NoSuchProcess:  # the server died; its kernels, if any, follow their parent
                kernels = []
            request = urllib.request.Request(lab.page("api/shutdown"), method="POST")
            try:
                urllib.request.urlopen(request, timeout=10).close()  # the server stops its kernels
                server.wait(timeout=60)
            except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            _, alive = psutil.wait_procs(kernels, timeout=30)
            for process in alive:
                process.kill()


def _text(driver: Any, selector: str) -> str:
    # One script reads the element and its text together: the output area re-renders while the
    # kernel sends a new table, and an element found in one call can be gone by the next.
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : '';"
    return str(driver.execute_script(script, selector))


def _menu_item(driver: Any, label: str) -> Any:
    """The open menu's item that reads ``label`` (its shortcut aside), or None."""
    items = driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item .lm-Menu-itemLabel")
    try:
        return next((item for item in items if item.text == label), None)
    except StaleElementReferenceException:  # the menu re-rendered: the caller's wait looks again
        return None


def _table(driver: Any) -> dict[str, str]:
    """The explorer's output as the page shows it: the steered column's heading and row 0's texts."""
    return {
        "heading": _text(driver, ".widget-output th.col_heading.col1"),
        "unsteered": _text(driver, ".widget-output td.data.row0.col0"),
        "steered": _text(driver, ".widget-output td.data.row0.col1"),
    }


def _recomputed(driver: Any, heading: str) -> dict[str, str]:
    """The table once the kernel has sent the one for ``heading`` (the widgets' new values)."""
    return _wait(
        lambda: (table := _table(driver))["heading"] == heading and table["steered"] and table, COMPUTE_S, heading
    )


def _type_into(driver: Any, label: str, text: str) -> None:
    """Replace what a Text widget labelled ``label`` holds with ``text``, and press Enter."""
    field = driver.find_element(
        By.XPATH, f"//div[contains(@class, 'widget-text')][label[normalize-space()='{label}']]//input"
    )
    field.click()
    field.send_keys(Keys.CONTROL, "a")  # typing replaces the selection: no empty value reaches the kernel
    field.send_keys(text, Keys.ENTER)


def _set_slider(driver: Any, label: str, value: int) -> None:
    """Type ``value`` into the editable readout of the slider labelled ``label``, and press Enter."""
    readout = driver.find_element(
        By.XPATH,
        f"//div[contains(@class, 'widget-slider')][label[normalize-space()='{label}']]"
        "//div[contains(@class, 'widget-readout')]",
    )
    readout.click()
    readout.send_keys(Keys.CONTROL, "a")
    readout.send_keys(str(value), Keys.ENTER)


def _explore(driver: Any, lab: Lab, folder: Path) -> None:
    driver.get(lab.page("lab/tree/explorer.ipynb"))
    # The status bar's "Python 3 (ipykernel) | Idle": the kernel is connected, not just named.
    _wait(lambda: "| Idle" in _text(driver, "#jp-main-statusbar"), READY_S, "the notebook's kernel to be idle")
    # Run > Run All Cells, clicked as a user would.
    next(m for m in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text == "Run").click()
    _wait(lambda: _menu_item(driver, "Run All Cells"), READY_S, "the Run menu").click()

    first = _recomputed(driver, "steered: ' Love' - ' Hate', layer 6, c = 5")
    screenshots.save_screenshot(driver, folder / "explorer.png")
    assert first["unsteered"] and first["unsteered"] != first["steered"]

    previous = first
    for change, heading in (
        (lambda: _type_into(driver, "p+", " weddings"), "steered: ' weddings' - ' Hate', layer 6, c = 5"),
        (lambda: _type_into(driver, "p-", " funerals"), "steered: ' weddings' - ' funerals', layer 6, c = 5"),
        (lambda: _set_slider(driver, "layer", 12), "steered: ' weddings' - ' funerals', layer 12, c = 5"),
    ):
        change()
        table = _recomputed(driver, heading)  # the heading names the widgets' new values
        assert table["unsteered"] == first["unsteered"], heading  # same seed, no steering: unchanged
        assert table["steered"] != previous["steered"], heading  # the new vector changed the text
        previous = table
    screenshots.save_screenshot(driver, folder / "explorer-changed.png")


def test_the_explorer_recomputes_the_steered_completion_in_jupyterlab(tmp_path):
    """Run the notebook from the Run menu, then type a new p+, a new p- and a new layer into the
    widgets: each time the steered completion changes and the unsteered one stays as it was."""
    root, scratch = tmp_path / "lab", tmp_path / "scratch"
    root.mkdir()
    scratch.mkdir()
    kernelspec = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[new_code_cell(EXPLORER)], metadata=kernelspec), root / "explorer.ipynb")
    with jupyter_lab(root, scratch) as lab, screenshots.browser(width=1400, height=1000) as driver:
        try:
            _explore(driver, lab, tmp_path)
        except Exception:
            screenshots.save_screenshot(driver, tmp_path / "failure.png")  # what the page showed then
            raise
