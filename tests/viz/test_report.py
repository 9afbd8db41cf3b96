"""report.html: self-contained (no external resources), and in headless Chromium: no console errors, the
per-example sort and search work, the summary table sorts; a screenshot is written. The browser part
skips when chromium, its driver or selenium is absent."""

from __future__ import annotations

import re
import shutil

import pytest

from attnlens.cli import main


@pytest.fixture(scope="module")
def report_path(tiny_bert_dir, tiny_sst2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "eval"
    assert main(["--quiet", "evaluate", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "8",
                 "--methods", "rollout,raw,gradient,random", "--sanity-steps", "last", "--report",
                 "--out", str(out)]) == 0
    return out / "report.html"


def test_report_is_self_contained(report_path):
    page = report_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "data:image/png;base64," in page and page.count('class="example"') == 8
    assert 'id="search"' in page and 'id="sort-by"' in page


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("chromium or chromedriver not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_report_in_headless_chromium(report_path, tmp_path):
    driver = _driver()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        driver.set_window_size(1280, 1400)
        driver.get(report_path.as_uri())
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        examples = driver.find_elements(By.CSS_SELECTOR, "#examples > .example")
        assert len(examples) == 8
        Select(driver.find_element(By.ID, "sort-by")).select_by_value("+confidence")
        values = [float(e.get_attribute("data-confidence")) for e in
                  driver.find_elements(By.CSS_SELECTOR, "#examples > .example")]
        assert values == sorted(values)
        Select(driver.find_element(By.ID, "sort-by")).select_by_value("confidence")
        values = [float(e.get_attribute("data-confidence")) for e in
                  driver.find_elements(By.CSS_SELECTOR, "#examples > .example")]
        assert values == sorted(values, reverse=True)
        first_word = driver.find_elements(By.CSS_SELECTOR, "#examples > .example")[0].get_attribute("data-text").split()[0]
        driver.find_element(By.ID, "search").send_keys(first_word)
        shown = [e for e in driver.find_elements(By.CSS_SELECTOR, "#examples > .example") if e.is_displayed()]
        assert shown and all(first_word in e.get_attribute("data-text") for e in shown)
        assert int(driver.find_element(By.ID, "shown").text) == len(shown)
        header = driver.find_elements(By.CSS_SELECTOR, "#table-0 th")[1]
        header.click()
        column = [c.get_attribute("data-value") for c in driver.find_elements(By.CSS_SELECTOR, "#table-0 tbody tr td:nth-child(2)")]
        numbers = [float(c) for c in column if c]
        assert numbers == sorted(numbers)
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 1000
        assert [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def test_study_report(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "study"
    assert main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--methods", "raw,rollout", "--report", "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('class="example"') == 6 and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_study_report_heatmaps_in_headless_chromium(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "study"
    assert main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "8",
                 "--methods", "raw,rollout", "--report", "--out", str(out)]) == 0
    driver = _driver()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        driver.set_window_size(1280, 1400)
        driver.get((out / "report.html").as_uri())
        assert [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == []
        examples = driver.find_elements(By.CSS_SELECTOR, "#examples > .example")
        assert len(examples) == 8
        rows = examples[0].find_elements(By.CSS_SELECTOR, ".row .method")
        assert [r.text for r in rows] == ["raw", "rollout", "gradient"]
        assert examples[0].find_elements(By.CSS_SELECTOR, ".tok")  # the tokens are drawn
        Select(driver.find_element(By.ID, "sort-by")).select_by_value("+confidence")
        values = [float(e.get_attribute("data-confidence")) for e in
                  driver.find_elements(By.CSS_SELECTOR, "#examples > .example")]
        assert values == sorted(values)
        driver.save_screenshot(str(tmp_path / "study-report.png"))
        assert (tmp_path / "study-report.png").stat().st_size > 1000
    finally:
        driver.quit()
