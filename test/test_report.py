"""The report without a browser: best per column, markdown table, escaping, embedding, atomic writes."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from lib.errors import InputError
from lib.metrics.result import result
from lib.report import Picture, Section, markdown_table, metric_table, render_report, write_report


def png(value, size=4) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size + 1, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def const(name, value, higher_is_better=True, **fields):
    return result(name, np.full((3, 1), value), higher_is_better=higher_is_better, **fields)


def sample_table():
    centre = const("pointing", 0.5)
    return metric_table(
        {
            "a|b": [const("deletion", 0.2, False), const("pointing", 0.9, baseline=centre)],
            "c": [const("deletion", 0.1, False), const("pointing", 0.9, baseline=centre)],
            "d": [const("deletion", 0.3, False)],
        },
        seconds={"a|b": 0.5, "c": 0.25},
    )


def test_the_best_follows_higher_is_better_ties_are_all_bold_and_missing_is_never_best():
    table = sample_table()
    assert table.columns == ("deletion", "pointing", "seconds per image")
    best = [[table.best(row, column) for column in range(3)] for row in range(3)]
    assert best == [[False, True, False], [True, True, True], [False, False, False]]
    assert table.cells[2][1].text == "—" and table.cells[2][2].text == "—"


def test_the_markdown_table_has_bold_best_escaped_pipes_and_the_baseline_row():
    assert markdown_table(sample_table()).splitlines() == [
        "| method | deletion ↓ | pointing ↑ | seconds per image ↓ |",
        "| --- | ---: | ---: | ---: |",
        r"| a\|b | 0.200 [0.200, 0.200] | **0.900 [0.900, 0.900]** | 0.5 |",
        "| c | **0.100 [0.100, 0.100]** | **0.900 [0.900, 0.900]** | **0.25** |",
        "| d | 0.300 [0.300, 0.300] | — | — |",
        "| *baseline* |  | *0.500 [0.500, 0.500]* |  |",
    ]


def test_results_that_disagree_or_repeat_are_refused():
    with pytest.raises(InputError, match="higher_is_better"):
        metric_table({"a": [const("m", 1)], "b": [const("m", 1, False)]})
    with pytest.raises(InputError, match="two results"):
        metric_table({"a": [const("m", 1), const("m", 2)]})
    with pytest.raises(InputError, match="'z'"):
        metric_table({"a": [const("m", 1)]}, seconds={"z": 1.0})


def test_the_page_escapes_all_text_and_embeds_the_exact_images_with_nothing_outside():
    tiles = [("<b>image</b>", png(10)), ('"map" & co', png(200))]
    page = render_report(
        "<T>", sample_table(), png(50), [Picture("<cap>", tiles)], notes=["<script>x</script>"]
    )
    for raw in ("<T>", "<cap>", "<b>", "<script", '"map"'):
        assert raw not in page
    assert "&lt;T&gt;" in page and "&lt;script&gt;x&lt;/script&gt;" in page
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(s) for s in sources] == [png(50), png(10), png(200)]
    assert re.findall(r'width="(\d+)" height="(\d+)"', page) == [("5", "4")] * 3
    assert re.findall(r"(?:src|href)=", page) == ["src="] * 3  # no link, stylesheet or script to fetch
    assert page.count("<tr>") == 1 + 3 + 1  # header, one per method, the baseline


def test_a_report_that_cannot_be_made_leaves_the_previous_one_and_no_temporary_file(tmp_path):
    path = write_report(tmp_path / "report.html", "first", sample_table())
    before = path.read_bytes()
    with pytest.raises(InputError, match="not PNG bytes"):
        write_report(path, "second", sample_table(), pictures=[Picture("p", [("x", b"GIF89a...")])])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_values_that_read_the_same_tie_and_sections_give_one_table_each():
    table = metric_table({"a": [const("deletion", 0.0951, False)], "b": [const("deletion", 0.09504, False)]})
    assert table.best(0, 0) and table.best(1, 0)  # both read 0.095: both bold
    page = render_report("t", [Section("first model", table), Section("second <model>", sample_table())])
    assert page.count('<table class="metrics"') == 2 and "<h2>second &lt;model&gt;</h2>" in page
