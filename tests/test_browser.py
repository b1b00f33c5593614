"""Notebook 03 as a person uses it: JupyterLab in headless Chromium runs the whole notebook, the explorer
appears on this machine's run, a committed run is chosen, a slider moves, and the numbers shown are exactly what
moe_reduce.explorer's functions give.

Needs Debian's chromium (driven by Playwright for Python through executable_path; Playwright's own browser
download is not used). Skipped without it, except under CI=true, where it must run."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from moe_reduce import explorer
from moe_reduce.results import find_results, load_runs

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/03_perf.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI") == "true"

if not IN_CI and not os.path.exists(CHROMIUM):
    pytest.skip("the browser test needs Debian's chromium at /usr/bin/chromium: `apt-get install chromium` "
                "(under CI=true it always runs)", allow_module_level=True)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(home: Path) -> dict[str, str]:
    """Environment for a throwaway JupyterLab: its own config, data, runtime and IPython folders; the news
    announcements off (no pop-up over the notebook, no network)."""
    dirs = {name: home / name for name in ("config", "data", "runtime", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (dirs["config"] / "labconfig").mkdir()
    (dirs["config"] / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    return {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"])}


def workspace(home: Path) -> Path:
    """A folder holding a copy of the notebook and a link to results/, so that running and saving in the browser
    never touches the repository's files."""
    root = home / "work"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    (root / "results").symlink_to(REPO / "results")
    return root


def start_lab(home: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab on 127.0.0.1:port, serving a copy of the notebook, with the app object exposed to the page."""
    env, root = lab_env(home), workspace(home)
    log = open(home / "lab.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         "--allow-root"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_lab(proc: subprocess.Popen, port: int, token: str, home: Path, timeout: float = 60) -> None:
    """Until the server answers its status API; fails with its log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{(home / 'lab.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer in {timeout} s:\n{(home / 'lab.log').read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server this test started, by its PID (its kernels go with it)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def device_label(page) -> str:
    """The explorer's device as its dropdown shows it."""
    label = page.eval_on_selector(".moe-explorer-device select", "s => s.options[s.selectedIndex].text")
    return label.replace("\xa0", " ")  # the dropdown shows spaces as no-break spaces


def expected_lines(page, n_tokens: int) -> dict[str, str]:
    """What explorer.readout gives for the explorer's default choice at n_tokens, on the device it shows."""
    label = device_label(page)
    by_label = {d.label: d for d in explorer.devices(None, load_runs(find_results(REPO)))}
    assert label in by_label, f"the explorer opened on {label!r}, not a committed run or preset"
    return explorer.readout(explorer.Choice(n_tokens=n_tokens), by_label[label])


def shown(page) -> dict[str, str]:
    """The explorer's readout lines as displayed, by name."""
    return {key: page.inner_text(f".moe-explorer-readout .moe-{key}").split(": ", 1)[1]
            for key in ("bytes", "intensity", "predicted", "measured")}


def test_notebook_03_explorer_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    port, token = free_port(), uuid.uuid4().hex
    proc = start_lab(tmp_path / "lab", port, token)
    try:
        wait_for_lab(proc, port, token, tmp_path / "lab")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})  # the explorer's cell fits
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=30_000)
            page.wait_for_function(  # the notebook's kernel is up and idle
                "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=60_000)
            # The command's promise settles when the last cell has run.
            page.evaluate("""() => { window.ranAll = false;
                window.jupyterapp.commands.execute('notebook:run-all-cells').then(() => { window.ranAll = true; }); }""")
            page.wait_for_function("() => window.ranAll", timeout=240_000, polling=1000)
            prompts = page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt", "ps => ps.map(p => p.textContent)")
            assert prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()

            readout = page.locator(".moe-explorer-readout")
            readout.scroll_into_view_if_needed()
            # It opens on this machine's run (the notebook's); the numbers are then checked on a committed run.
            assert device_label(page).startswith(explorer.THIS_MACHINE)
            labels = page.eval_on_selector_all(".moe-explorer-device select option",
                                               "os => os.map(o => o.text.replace(/\\u00a0/g, ' '))")
            committed = explorer.default_device(explorer.devices(None, load_runs(find_results(REPO))))
            page.select_option(".moe-explorer-device select", index=labels.index(committed.label))
            page.wait_for_function("s => document.querySelector('.moe-explorer-readout .moe-source')?.textContent"
                                   ".endsWith(s)", arg=committed.source, timeout=10_000)
            slider = page.locator(".moe-explorer-n-tokens")
            before_n = int(slider.locator(".widget-readout").inner_text())
            before = shown(page)
            assert before == {k: v for k, v in expected_lines(page, before_n).items() if k in before}

            slider.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "n => document.querySelector('.moe-explorer-n-tokens .widget-readout').textContent.trim() !== n",
                arg=str(before_n), timeout=10_000)
            after_n = int(slider.locator(".widget-readout").inner_text())
            want = expected_lines(page, after_n)
            page.wait_for_function("b => document.querySelector('.moe-explorer-readout .moe-bytes').textContent"
                                   ".endsWith(b)", arg=want["bytes"], timeout=10_000)
            after = shown(page)
            assert after_n == 2 * before_n and after != before
            assert after == {k: v for k, v in want.items() if k in after}

            page.wait_for_function(  # the kernel has sent everything the change produced
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'")
            page.locator(".jp-Cell", has=page.locator(".moe-explorer-readout")).screenshot(path=str(tmp_path / "explorer.png"))
            assert (tmp_path / "explorer.png").stat().st_size > 10_000
            browser.close()
    finally:
        stop(proc)
