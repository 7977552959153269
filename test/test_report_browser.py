"""The report in a real browser: Debian's headless chromium, driven by Playwright.

CI installs chromium with apt (`.ci/run`) and Playwright with the test extra; Playwright's own browser
download is never used. A missing browser fails the test with what to install: CI must run it.
"""

import io
import shutil

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from lib.metrics.result import result
from lib.plot import overlay
from lib.report import Picture, metric_table, render_report, write_report

# A name with markup checks that the page shows text, not HTML.
METHODS = ("Grad-CAM", "CAM <GAP>", "Score-CAM")
RNG = np.random.default_rng(0)


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def curves_png(results) -> bytes:
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    for method, randomisation in results.items():
        ax.plot(randomisation.steps, np.nanmean(randomisation.curves, axis=(0, 1)), marker="o", label=method)
    ax.set_xticks(randomisation.steps, randomisation.labels)
    ax.set(xlabel="randomised down to", ylabel="rank correlation")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def sample_results():
    """{method: [deletion, pointing game, randomisation]} on 6 images and 2 classes.

    CAM <GAP> has the lowest deletion and the highest pointing game; Score-CAM's curve falls fastest.
    """
    steps, labels = np.arange(4.0), ("logits", "conv5", "conv4", "conv1")
    centre = result("pointing game", RNG.uniform(0.4, 0.5, (6, 2)))  # the centre prior
    results = {}
    for rank, method in enumerate(METHODS):
        curves = np.clip(1 - steps * (0.2 + 0.1 * rank) + RNG.normal(0, 0.02, (6, 2, 4)), 0, 1)
        results[method] = [
            result("deletion", RNG.uniform(0.1, 0.2, (6, 2)) + 0.1 * (rank != 1), higher_is_better=False),
            result("pointing game", RNG.uniform(0.6, 0.7, (6, 2)) + 0.2 * (rank == 1), baseline=centre),
            # Similarity of the maps after randomisation: the lower, the more the maps depend on the weights.
            result(
                "randomisation",
                curves[..., -1],
                higher_is_better=False,
                curves=curves,
                steps=steps,
                labels=labels,
            ),
        ]
    return results


def sample_pictures(count=2, size=48):
    pictures = []
    for index in range(count):
        image = RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)
        tiles = [("image", png(image))]
        for method in METHODS:
            heatmap = np.outer(np.hanning(size), np.roll(np.hanning(size), 8 * index))
            tiles.append((method, png(overlay(image, heatmap / heatmap.max()))))
        pictures.append(Picture(f"picture {index} <{index}>, class 3", tiles))
    return pictures


def sample_report(path):
    results = sample_results()
    table = metric_table(results, seconds={"Grad-CAM": 0.004, "CAM <GAP>": 0.003, "Score-CAM": 0.21})
    randomisation = {method: metric[2] for method, metric in results.items()}
    notes = ["Synthetic values on 6 images & 2 classes: nothing here is a measurement."]
    return write_report(
        path, "Report <test>", table, curves_png(randomisation), sample_pictures(), notes=notes
    )


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install -r requirements.txt` (the test extra)")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Debian's chromium is not installed: `apt-get install -y chromium` (bash .ci/run does it)"
        )
    with sync_playwright() as playwright:
        # No sandbox: CI runs as root, where chromium refuses its sandbox; the page is our own file.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def load(browser, path):
    """Opens `path`; returns the page and its problems: console errors, page errors, outside requests."""
    page = browser.new_page()
    url = path.resolve().as_uri()
    problems = []
    page.on(
        "console", lambda message: message.type == "error" and problems.append(f"console: {message.text}")
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
    page.on(
        "request",
        lambda request: (
            request.url == url
            or request.url.startswith("data:")
            or problems.append(f"request: {request.url}")
        ),
    )
    page.goto(url)  # returns after the load event: every image has loaded or failed
    return page, problems


def images(page):
    """[(alt, naturalWidth)] of every <img>, once each has decoded or failed to."""
    return page.evaluate(
        """async () => Promise.all([...document.images].map(
            image => image.decode().then(() => [image.alt, image.naturalWidth], () => [image.alt, 0])))"""
    )


def test_the_report_loads_whole_in_a_browser(browser, tmp_path):
    page, problems = load(browser, sample_report(tmp_path / "report.html"))
    decoded = images(page)
    assert len(decoded) == 1 + 2 * (1 + len(METHODS))  # the curves, then 2 pictures of image + maps
    assert [alt for alt, width in decoded if width == 0] == []
    assert problems == []
    assert page.title() == "Report <test>"


def test_the_table_has_one_row_per_method_and_the_best_in_bold(browser, tmp_path):
    page, _ = load(browser, sample_report(tmp_path / "report.html"))
    rows = page.locator("table.metrics tbody tr")
    assert rows.locator("th").all_inner_texts() == list(METHODS)
    bold = rows.evaluate_all(
        "rows => rows.map(row => [...row.querySelectorAll('td')].map(td => !!td.querySelector('strong')))"
    )
    assert bold == [[False, False, False, False], [True, True, False, True], [False, False, True, False]]
    headers = page.locator("table.metrics thead th").all_inner_texts()
    assert headers == ["method", "deletion ↓", "pointing game ↑", "randomisation ↓", "seconds per image ↓"]


def test_the_checks_see_a_broken_image_and_an_outside_request(browser, tmp_path):
    """The assertions above could fail: a PNG that does not decode, and an image from outside the page."""
    good = png(np.zeros((8, 8, 3), np.uint8))
    broken = good[:33] + b"\0" * (len(good) - 33)  # signature and header intact, data destroyed
    table = metric_table({"a": [result("m", [[1.0]])]})
    page, _ = load(
        browser, write_report(tmp_path / "broken.html", "t", table, pictures=[Picture("p", [("x", broken)])])
    )
    assert images(page) == [["x", 0]]
    # The report's policy blocks what an injected tag would load, and the console says so.
    outside = render_report("t", table).replace(
        "<h2>", '<img src="http://127.0.0.1:9/x.png" alt="out"><h2>', 1
    )
    (tmp_path / "outside.html").write_text(outside, encoding="utf-8")
    page, problems = load(browser, tmp_path / "outside.html")
    assert images(page) == [["out", 0]]
    assert any("Content Security Policy" in problem for problem in problems), problems
    # Without the policy the request is made, fails, and is seen.
    (tmp_path / "open.html").write_text('<img src="http://127.0.0.1:9/x.png">', encoding="utf-8")
    _, problems = load(browser, tmp_path / "open.html")
    assert any(problem.startswith("request: http://127.0.0.1:9/") for problem in problems), problems
