"""The HTML report: built from a small real store, read-only, deterministic, and checked in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from medtransfer.errors import ConfigError, StoreError
from medtransfer.report.html import SECTIONS, build_report
from medtransfer.report.stats import BOOTSTRAP
from medtransfer.runner import ResultStore, load_spec, run_grid

SPEC = """name: page
models: [test-cnn, small-cnn]
datasets: [phantom-binary-28]
protocols: [linear, knn]
analyses: [saliency]
seeds: [0, 1]
fractions: [0.5, 1.0]
dataset_options: {phantom-binary-28: {n: 60}}
protocol_options: {linear: {C_grid: [0.1, 1.0], n_boot: 100}, knn: {n_boot: 100}}
analysis_options: {saliency: {n_images: 2}}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "spec.yaml").write_text(SPEC)
    with ResultStore(root / "page.sqlite") as st:
        summary = run_grid(load_spec(root / "spec.yaml"), st)
    assert not summary.failed, summary.failed
    return root / "page.sqlite"


def test_the_page_holds_every_section_and_chart(store: Path, tmp_path: Path) -> None:
    before = store.read_bytes()
    info = build_report(store, tmp_path / "r.html", n_boot=200)
    page = info.path.read_text()
    assert store.read_bytes() == before  # the store is only read
    assert all(f'<section id="{s}">' in page for s in SECTIONS)
    # per protocol a bar chart and a heat map; per (dataset, protocol) with 2 fractions a curve
    assert info.charts == {"bar": 2, "curve": 2, "heatmap": 2}
    assert page.count('data-chart="bar"') == 2 and page.count('data-chart="curve"') == 2
    assert info.images == 4 and page.count('src="data:image/png;base64,') == 4  # a saliency picture per model and seed
    # one pair of models x 2 protocols x 2 fractions, each paired over the same test images
    assert info.comparisons == 4 and page.count(BOOTSTRAP) == 4 + 1  # + the note that explains it
    assert "Holm" in page and not re.search(r'(src|href)="(https?:)?//', page)  # nothing loaded from elsewhere
    assert info.cells == 2 * 2 * 2 * 2 + 2 * 2  # protocol cells + saliency cells, all in the provenance table
    assert len(re.findall(r"<tr><td><code title=", page)) == info.cells


def test_the_same_store_gives_the_same_page(store: Path, tmp_path: Path) -> None:
    a = build_report(store, tmp_path / "a.html", n_boot=100).path.read_bytes()
    b = build_report(store, tmp_path / "b.html", n_boot=100).path.read_bytes()
    assert a == b


def test_bad_stores_are_clear_errors_and_nothing_is_written(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "empty.sqlite") as st:
        assert st.results() == []
    with pytest.raises(ConfigError, match="holds no results; no report was written.*medtransfer bench"):
        build_report(tmp_path / "empty.sqlite", tmp_path / "r.html")
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (a)")
    with pytest.raises(StoreError, match="not a medtransfer results store"):
        build_report(foreign, tmp_path / "r.html")
    with pytest.raises(StoreError, match="No results store at"):
        build_report(tmp_path / "missing.sqlite", tmp_path / "r.html")
    with pytest.raises(ConfigError, match="would overwrite the store"):
        build_report(tmp_path / "empty.sqlite", tmp_path / "empty.sqlite")
    assert not (tmp_path / "r.html").exists()


def test_cli_report_writes_the_page_and_says_what_it_holds(store: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "medtransfer.cli", "report", str(store), "-o",
                          str(tmp_path / "p.html"), "--n-boot", "100", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"comparisons": 4' in out.stdout and (tmp_path / "p.html").is_file()


# ---------------------------------------------------------------- in a real browser


def _chromium() -> str | None:
    for candidate in (os.environ.get("MEDTRANSFER_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def test_the_page_in_headless_chromium(store: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs "
                                                                   "it with the test extra)")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; or set MEDTRANSFER_CHROMIUM)")
    info = build_report(store, tmp_path / "report.html", n_boot=100)
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(info.path.resolve().as_uri())
            for kind, n in info.charts.items():  # every chart drawn, with a visible size
                charts = page.locator(f'figure.chart[data-chart="{kind}"] svg')
                assert charts.count() == n
                for i in range(n):
                    box = charts.nth(i).bounding_box()
                    assert box is not None and box["width"] > 200 and box["height"] > 100
            images = page.locator("figure.picture img")
            assert images.count() == info.images
            assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
                       for i in range(info.images))  # the embedded PNGs decode
            assert page.locator("section").count() == len(SECTIONS)
            # the provenance table sorts by a clicked column
            table = page.locator("table.provenance")
            table.locator("th", has_text="seed").click()
            seeds = table.locator("tbody tr td:nth-child(5)").all_text_contents()
            assert seeds == sorted(seeds)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
        finally:
            browser.close()
    assert errors == []


def test_the_report_reads_the_store_without_the_training_stack(store: Path, tmp_path: Path) -> None:
    # a report is a second's work: the store, numpy and matplotlib, never torch (seconds to import)
    code = ("import sys\nfrom medtransfer.report.html import build_report\n"
            f"build_report({str(store)!r}, {str(tmp_path / 'p.html')!r}, n_boot=50)\n"
            "print([m for m in ('torch', 'sklearn', 'pytorch_lightning', 'monai') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_store_of_a_newer_schema_gets_no_report(store: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(store.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99.*Upgrade medtransfer"):
        build_report(newer, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_published_numbers_in_the_store_go_beside_ours(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "study.sqlite"
    copy.write_bytes(store.read_bytes())
    with ResultStore(copy) as st:
        ours = [r["value"] for r in st.results(model="test-cnn", protocol="linear", metric="accuracy")
                if r["fraction"] in (None, 1.0)]
        st.set_meta("study", {"title": "A study", "citation": "Someone 2022", "source": "https://example.org",
                              "omitted": ["STOIC: not here"]})
        st.set_meta("published", [
            {"model": "test-cnn", "dataset": "phantom-binary-28", "protocol": "linear", "metric": "accuracy",
             "value": 0.5, "ci_halfwidth": 0.02, "note": "2-way"},
            {"model": "moco-v2", "dataset": "phantom-binary-28", "protocol": "linear", "metric": "accuracy",
             "value": 0.7, "ci_halfwidth": None, "note": ""}])
    page = build_report(copy, tmp_path / "p.html", n_boot=50).path.read_text()
    section = page[page.index('<section id="published">'):page.index('<section id="bars">')]
    mean = sum(ours) / len(ours)
    assert f"<td>{100 * mean:.1f}</td>" in section and "<td>50.0 ± 2.0</td>" in section
    assert f"<td>+{100 * (mean - 0.5):.1f}</td>" in section or f"<td>{100 * (mean - 0.5):.1f}</td>" in section
    assert "<td>not run</td>" in section and "STOIC: not here" in section and "A study" in section
