"""A real studio server (``python app.py`` in a subprocess, temp database, free loopback port) and a real headless
Chromium driven by playwright.

Chromium and playwright are installed by ``.ci/run``, which sets ``STUDIO_BROWSER_TESTS=required``: then a missing
browser fails the run loudly. Elsewhere the tests skip with the reason when the browser is not installed.
Screenshots go to ``STUDIO_SCREENSHOTS`` when set, else to a temp folder (its path is printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
START_TIMEOUT_S = 240  # imports and model loading on a busy 2-core machine


def _missing(reason: str):
    if os.environ.get("STUDIO_BROWSER_TESTS") == "required":
        pytest.fail(f"browser tests are required here but {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("STUDIO_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_resources(folder: Path, env: dict) -> None:
    """When the trained toy guidance network or toy reward is not in checkpoints/ (they are trained separately),
    point the studio at a random guidance network and the toy world's oracle reward, so the page is complete."""
    from alignment.presets import CHECKPOINTS

    if not (CHECKPOINTS / "toy-guidance" / "config.json").is_file():
        import torch

        from alignment.guidance_network import GuidanceNetwork

        torch.manual_seed(0)
        GuidanceNetwork.toy_size(reward_std=5.0).save_pretrained(folder / "guidance")
        env["STUDIO_GUIDANCE"] = str(folder / "guidance")
    if not (CHECKPOINTS / "toy-pickscore" / "config.json").is_file():
        env["STUDIO_REWARD"] = "toy-taste"


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory):
    """(base URL, data folder) of a running ``python app.py``."""
    folder = tmp_path_factory.mktemp("studio-browser")
    port = free_port()
    env = dict(os.environ, STUDIO_DATA_DIR=str(folder / "data"), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               TOKENIZERS_PARALLELISM="false", STUDIO_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("STUDIO_DATABASE_URL", None)
    env.pop("SPACE_ID", None)
    _test_resources(folder, env)
    log = open(folder / "server.log", "w")
    process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=REPO,
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            log.close()
            pytest.fail(f"the studio exited with {process.returncode}:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the studio did not answer on {url} within {START_TIMEOUT_S} s")
        time.sleep(0.5)
    yield url, folder / "data"
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        _missing("Chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ["STUDIO_SCREENSHOTS"]) if os.environ.get("STUDIO_SCREENSHOTS") else \
        tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder
