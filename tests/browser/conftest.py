"""Browser fixtures: Debian's chromium (infra/browser/chromium.sh installs it)
driven by Playwright for Python (its own browser download is not used), and
the anvil + bridge fixtures of the L1 end-to-end tests."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from test_l1_anvil import anvil, l1  # noqa: E402,F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on the PATH: run `make install` (infra/browser/chromium.sh installs Debian's chromium)")


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright
    if not (REPO / "web" / "dist" / "app.js").is_file():
        pytest.fail("the dashboard is not built: run `make install` (or `npm ci && npm run build` in web/)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        yield b
        await b.close()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 1300})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    await context.close()
    assert not errors, f"errors in the page: {errors}"

