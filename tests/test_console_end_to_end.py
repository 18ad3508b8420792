"""The console at /ui in a real browser (Debian's chromium, driven by Playwright through its
`executable_path`; never a downloaded browser) against `sovra up` with the real engine: the page
shows SmolLM2 unloaded, its Load button loads it, `sovra unload` unloads it, and a screenshot is
left in test-artifacts/ for people to look at."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.conftest import CATALOG, REPO, TOKEN, start_platform, stop_platform

pytestmark = pytest.mark.engine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        pytest.skip("the console's browser test needs Debian's chromium (apt-get install chromium); skipped")
    return CHROMIUM


def test_the_console_shows_a_service_change_state(
    chromium: str, llama_server: Path, smollm2: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    catalog = tmp_path / "catalog.yaml"
    declared = (CATALOG / "smollm2.yaml").read_text()
    catalog.write_text(declared.replace("minReplicas: 1, maxReplicas: 1", "minReplicas: 0, maxReplicas: 1"))
    platform = start_platform(tmp_path, catalog=catalog)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            response = page.goto(f"{platform.base_url}/ui")
            assert response is not None and response.ok
            assert "default-src 'self'" in response.headers["content-security-policy"]
            page.fill("#token", TOKEN)
            page.click("#login button")
            state = page.locator('tr[data-service="smollm2"] .state')
            expect(state).to_have_text("unloaded", timeout=10_000)
            page.click('tr[data-service="smollm2"] button[data-action="load"]')
            expect(state).to_have_text("ready", timeout=60_000)
            assert len(platform.engine_pids()) == 1
            client = openai.OpenAI(base_url=f"{platform.base_url}/v1", api_key=TOKEN, max_retries=0)
            client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
            page.reload()  # the ledger's row shows in the usage panel (refreshed every 10 s otherwise)
            page.fill("#token", TOKEN)
            page.click("#login button")
            usage = page.locator("#usage tr", has_text="smollm2")
            expect(usage).to_contain_text("env", timeout=15_000)  # the tenant of the SOVRA_API_KEY token
            expect(usage.locator("svg rect")).to_have_count(1)
            subprocess.run(
                [sys.executable, "-m", "sovra", "unload", "smollm2", "--url", platform.base_url],
                env={**os.environ, "SOVRA_API_KEY": TOKEN}, check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            expect(state).to_have_text("unloaded", timeout=10_000)  # the page follows without a reload
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
            page.fill("#token", "sk-wrong")
            page.click("#login button")
            expect(page.locator("#error")).to_contain_text("token", timeout=10_000)
            browser.close()
        assert (ARTIFACTS / "console.png").stat().st_size > 1000
    finally:
        stop_platform(platform)
