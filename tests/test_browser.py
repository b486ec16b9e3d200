"""The upload page in a real headless browser (Debian's Chromium driven by Playwright):
pick a file, upload it, see the score and the chart of per-slice scores; drop a batch, see
the table sorted by score grow, with the failed file's row, and open a row's chart."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from deepcurator.config import from_dict
from deepcurator.features import file_logmel, model_input
from deepcurator.serving.app import create_app
from deepcurator.serving.scoring import Scorer

from tests.helpers.audio import make_audio
from tests.helpers.serving import RUN_ID, running_server

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


DROP_FILES = """([files, target]) => {
  const data = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    data.items.add(new File([bytes], name, { type }));
  }
  const zone = document.querySelector(target);
  for (const kind of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
}"""


def test_batch_dropped_sorted_table_and_error_row(browser: Browser, tiny_scorer: Scorer, audio_set: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """Three files dropped on the page (one unreadable): rated one after another, a table
    sorted by score with the error row last, each scored row opening its slices' chart."""
    promos = {"bright.mp3": make_audio(tmp_path / "bright.mp3", 64.0, freq=1500.0, noise="blue", seed=1),
              "dark.mp3": make_audio(tmp_path / "dark.mp3", 35.0, freq=70.0, noise="brown", seed=2),
              "broken.mp3": audio_set["text"]}
    expected = {name: round(100 * tiny_scorer.track_probability(tiny_scorer.predict(model_input(file_logmel(p)))), 2)
                for name, p in promos.items() if name != "broken.mp3"}
    payload = [[name, "audio/mpeg", base64.b64encode(p.read_bytes()).decode()] for name, p in promos.items()]
    with running_server(create_app(from_dict({}), tiny_scorer)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model-id').textContent.includes('aggregation mean')")
        assert RUN_ID in page.inner_text("#model-id")
        page.evaluate(DROP_FILES, [payload, "#drop"])
        page.wait_for_function("document.getElementById('progress-text').textContent.startsWith('3 of 3')",
                               timeout=120_000)
        assert page.inner_text("#progress-text") == "3 of 3 rated, 1 failed"
        rows = page.eval_on_selector_all(
            "#batch tbody tr", "rs => rs.map(r => [r.className, ...[...r.cells].map(c => c.textContent)])")
        assert [r[0].split()[0] for r in rows] == ["scored", "scored", "failed"]
        scored = [(r[-1], float(r[2])) for r in rows[:2]]
        assert scored == sorted(((n, s) for n, s in expected.items()), key=lambda ns: -ns[1])
        for name, score in scored:
            assert score == pytest.approx(expected[name], abs=0.011)
        assert rows[2][-1].startswith("broken.mp3: not a readable audio file")
        assert "Rated 2 of 3 files" in page.inner_text("#status")

        # A row opens its chart: the dark promo is 35 s (1 slice), the bright one 64 s (2).
        page.click("#batch tr[data-file='dark.mp3']")
        assert page.locator("#result").is_visible()
        assert "dark.mp3: 35.0 s, 1 slices" in page.inner_text("#details")
        assert page.locator("#chart rect.bar").count() == 1
        page.click("#batch tr[data-file='bright.mp3']")
        assert "bright.mp3: 64.0 s, 2 slices" in page.inner_text("#details")
        assert page.locator("#chart rect.bar").count() == 2
        assert float(page.inner_text("#score")) == pytest.approx(expected["bright.mp3"], abs=0.011)
        assert page.locator("#batch tr.open").get_attribute("data-file") == "bright.mp3"
        page.close()
