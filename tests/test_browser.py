"""The upload page in a real headless browser (Debian's Chromium driven by Playwright):
pick a file, upload it, see the score and the chart of per-slice scores."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deepcurator.config import from_dict
from deepcurator.features import file_logmel, model_input
from deepcurator.serving.app import create_app
from deepcurator.serving.scoring import Scorer

from tests.helpers.serving import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed ({CHROMIUM}; apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def test_upload_shows_score_and_chart(browser: Browser, tiny_scorer: Scorer, audio_set: dict[str, Path],
                                      tmp_path: Path) -> None:
    with running_server(create_app(from_dict({}), tiny_scorer)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        assert page.title() == "DeepCurator"
        page.set_input_files("#audio", str(audio_set["mp3"]))
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        expected = tiny_scorer.track_probability(tiny_scorer.predict(model_input(file_logmel(audio_set["mp3"]))))
        assert float(page.inner_text("#score")) == pytest.approx(100 * expected, abs=0.011)
        assert page.inner_text("#label") in ("good", "not-good")
        assert page.locator("#chart rect.bar").count() == 3
        heights = [float(h) for h in page.eval_on_selector_all("#chart rect.bar",
                                                                "bs => bs.map(b => b.getAttribute('height'))")]
        assert all(h > 0 for h in heights)
        assert "95.0 s, 3 slices" in page.inner_text("#details")

        # An error is shown on the page, not thrown away.
        bad = tmp_path / "notes.mp3"
        shutil.copy(audio_set["text"], bad)
        page.set_input_files("#audio", str(bad))
        page.click("#submit")
        page.wait_for_selector("#status.error", timeout=60_000)
        assert "not a readable audio file" in page.inner_text("#status")
        assert page.locator("#result").is_hidden()
        page.close()
