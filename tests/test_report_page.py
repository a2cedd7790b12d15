"""report.html in a real headless browser: loads offline with no console errors, images decode, numbers match."""
import shutil
from pathlib import Path

import pytest

from bench.report.write import write_report
from bench.store.fragments import append_rows
from bench.store.read import read_results
from tests.test_report import _row

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: run `make browser` (pip playwright + Debian chromium)")
    if CHROMIUM is None:
        pytest.skip("no chromium at /usr/bin/chromium: run `make browser` (apt-get install chromium)")
    return sync_playwright


@pytest.mark.slow
def test_report_page_in_chromium(tmp_path):
    sync_playwright = _browser()
    rows = [_row("bp", 1, 32, 100.0), _row("scpl", 2, 32, 50.0), _row("scpl", 4, 32, 1.0, status="failed")]
    rows[-1].error = "RuntimeError: out of memory"
    append_rows(tmp_path, rows)
    write_report(tmp_path)
    page_path = tmp_path / "report.html"
    html = page_path.read_text()
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    frame = read_results(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        assert errors == []
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and min(widths) > 0  # every figure decoded
        text = page.inner_text("body")
        cells = page.eval_on_selector_all("td", "tds => tds.map(t => t.innerText)")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert "2.00x" in cells and "1x (100.0 s)" in cells  # the speedup table holds the parquet's numbers
    ok = frame[frame["status"] == "ok"]
    assert f"{ok['epoch_time_s'].max():.1f} s" in text
    assert "RuntimeError: out of memory" in text and "not a reproduction" in text
