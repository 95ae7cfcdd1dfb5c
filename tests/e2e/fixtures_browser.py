"""Fixtures: Debian's headless Chromium driven by Playwright.

Playwright's own browser download cannot work here, so the fixture launches
``/usr/bin/chromium`` (``make browser`` installs it). A missing browser skips the browser tests
locally and FAILS them under ``CI=true``, where a silent skip would hide the missing dependency.

``browser`` is one Chromium per test session (starting it costs seconds on a 2-core machine);
``page`` is a fresh context + page per test that records console errors and page errors, so a
test can assert the frontend ran without exceptions (``page.dv_errors``).
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests need {reason} (CI=true: failing instead of skipping); "
                    "run `make browser`", pytrace=False)
    pytest.skip(f"browser tests need {reason}")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Playwright ``Browser``) shared by the whole session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        _unavailable(f"Debian's chromium at {CHROMIUM}")
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own context) with ``page.dv_errors``: console errors and uncaught errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
          if m.type == "error" else None)
    pg.dv_errors = errors
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()
