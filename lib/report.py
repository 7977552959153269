"""The report of an evaluation: one self-contained HTML page, and the same table as GitHub markdown.

    table = metric_table({"Grad-CAM": [deletion, pointing], "CAM": [...]}, seconds={"Grad-CAM": 0.012})
    write_report(out / "report.html", "SqueezeNet on 50 photos", table, curves_png=png,
                 pictures=[Picture("chelsea, tabby", [("image", png), ("Grad-CAM", png), ...])])
    print(markdown_table(table))                                # for the README and doc/metrics.md

The page embeds every image as a base64 `data:` URI and its CSS inline, and needs no JavaScript; its
Content-Security-Policy forbids loading anything else, so it opens the same from a mail attachment,
a CI artefact or an offline disk. All text is HTML-escaped. Nothing here computes a metric or draws a
figure: it takes `MetricResult`s and PNG bytes.
"""

import base64
import dataclasses
import html
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lib.atomic import write_atomically
from lib.errors import InputError

if TYPE_CHECKING:  # for annotations only: lib.metrics imports TensorFlow, which a report does not need
    from lib.metrics.result import MetricResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECONDS = "seconds per image"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One entry of the table: the text to show, and the value that decides which entry is best."""

    text: str
    value: float  # as shown (rounded like the text, so equal texts tie); NaN for a missing entry, never best


@dataclasses.dataclass(frozen=True)
class MetricTable:
    """Rows are methods, columns are metrics (then seconds per image, if given); build with `metric_table`.

    Attributes:
        methods: the row names, in order.
        columns: the column names, in order.
        higher_is_better: one per column (seconds: False).
        cells: `cells[row][column]`.
        baselines: one text per column, the metric of a map that knows nothing of the image ("" if none).
    """

    methods: tuple[str, ...]
    columns: tuple[str, ...]
    higher_is_better: tuple[bool, ...]
    cells: tuple[tuple[Cell, ...], ...]
    baselines: tuple[str, ...]

    def best(self, row: int, column: int) -> bool:
        """Whether `cells[row][column]` is the best of its column (ties are all best; NaN never)."""
        values = [cells[column].value for cells in self.cells if not math.isnan(cells[column].value)]
        value = self.cells[row][column].value
        if not values or math.isnan(value):
            return False
        return value == (max(values) if self.higher_is_better[column] else min(values))


@dataclasses.dataclass(frozen=True)
class Picture:
    """One picture of the gallery: labelled PNG tiles shown side by side (the image, then each method's map).

    Attributes:
        caption: what the picture is ("chelsea.png, class 281 tabby").
        tiles: `(label, png_bytes)` pairs, in display order.
    """

    caption: str
    tiles: Sequence[tuple[str, bytes]]


def _interval_text(result: "MetricResult") -> str:
    low, high = result.interval
    return f"{result.mean:.3f} [{low:.3f}, {high:.3f}]"


def _columns(results: Mapping[str, Iterable["MetricResult"]]) -> dict[str, dict[str, "MetricResult"]]:
    """`{metric name: {method: result}}`, metrics in order of first appearance."""
    columns: dict[str, dict[str, MetricResult]] = {}
    for method, method_results in results.items():
        for result in method_results:
            column = columns.setdefault(result.name, {})
            if method in column:
                raise InputError(f"method {method!r} has two results named {result.name!r}; name them apart")
            column[method] = result
    return columns


def _direction(name: str, column: Mapping[str, "MetricResult"]) -> bool:
    directions = {result.higher_is_better for result in column.values()}
    if len(directions) > 1:
        raise InputError(f"the results named {name!r} disagree on higher_is_better; they are not one metric")
    return directions.pop()


def metric_table(
    results: Mapping[str, Iterable["MetricResult"]], seconds: Mapping[str, float] | None = None
) -> MetricTable:
    """The table of `results`: one row per method, one column per metric name, best per column marked.

    Args:
        results: `{method: [MetricResult, ...]}`; a method may lack a metric (its cell shows "—").
        seconds: `{method: seconds per image}` for a last column (lower is best), or None for none.

    Returns:
        A `MetricTable` for `markdown_table` and `write_report`.

    Raises:
        InputError: results of one name disagree on `higher_is_better`, a method has two results of
            one name, or `seconds` names a method that has no results.
    """
    methods = tuple(results)
    if seconds is not None and set(seconds) - set(methods):
        raise InputError(f"seconds given for {sorted(set(seconds) - set(methods))}, which have no results")
    columns = _columns(results)
    higher = [_direction(name, column) for name, column in columns.items()]
    baselines = [
        next((r.baseline for r in c.values() if r.baseline is not None), None) for c in columns.values()
    ]
    rows = [
        [
            Cell(_interval_text(c[m]), round(c[m].mean, 3)) if m in c else Cell("—", math.nan)
            for c in columns.values()
        ]
        for m in methods
    ]
    names = list(columns)
    if seconds is not None:
        names.append(SECONDS)
        higher.append(False)
        baselines.append(None)
        for row, method in zip(rows, methods, strict=True):
            value = seconds.get(method, math.nan)
            row.append(Cell("—", value) if math.isnan(value) else Cell(f"{value:.3g}", float(f"{value:.3g}")))
    return MetricTable(
        methods,
        tuple(names),
        tuple(higher),
        tuple(tuple(row) for row in rows),
        tuple("" if b is None else _interval_text(b) for b in baselines),
    )


def _header(table: MetricTable, column: int) -> str:
    return f"{table.columns[column]} {'↑' if table.higher_is_better[column] else '↓'}"


def _markdown_text(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(table: MetricTable) -> str:
    """`table` as a GitHub markdown table, the best of each column in bold, the baselines in a last row.

    Headers carry ↑ (higher is better) or ↓. Returns the text, ending in a newline.
    """
    lines = [
        "| method | "
        + " | ".join(_markdown_text(_header(table, c)) for c in range(len(table.columns)))
        + " |",
        "| --- |" + " ---: |" * len(table.columns),
    ]
    for row, method in enumerate(table.methods):
        cells = [
            f"**{cell.text}**" if table.best(row, column) else cell.text
            for column, cell in enumerate(table.cells[row])
        ]
        lines.append(f"| {_markdown_text(method)} | " + " | ".join(cells) + " |")
    if any(table.baselines):
        lines.append("| *baseline* | " + " | ".join(f"*{b}*" if b else "" for b in table.baselines) + " |")
    return "\n".join(lines) + "\n"


def _png_size(png: bytes, what: str) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    if not isinstance(png, bytes) or png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise InputError(f"{what} is not PNG bytes; pass e.g. the bytes of fig.savefig(buffer, format='png')")
    return struct.unpack(">II", png[16:24])


def _img(png: bytes, alt: str, css_class: str) -> str:
    width, height = _png_size(png, f"the image {alt!r}")
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img class="{css_class}" src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{html.escape(alt)}">'
    )


def _html_table(table: MetricTable) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(_header(table, c))}</th>' for c in range(len(table.columns)))
    rows = []
    for row, method in enumerate(table.methods):
        cells = "".join(
            f"<td><strong>{esc(cell.text)}</strong></td>"
            if table.best(row, column)
            else f"<td>{esc(cell.text)}</td>"
            for column, cell in enumerate(table.cells[row])
        )
        rows.append(f'<tr><th scope="row">{esc(method)}</th>{cells}</tr>')
    foot = ""
    if any(table.baselines):
        cells = "".join(f"<td>{esc(b)}</td>" for b in table.baselines)
        foot = f'<tfoot><tr><th scope="row">baseline</th>{cells}</tr></tfoot>'
    return (
        f'<table class="metrics"><thead><tr><th scope="col">method</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody>{foot}</table>"
    )


def _html_picture(picture: Picture) -> str:
    tiles = "".join(
        f"<figure>{_img(png, label, 'tile')}<figcaption>{html.escape(label)}</figcaption></figure>"
        for label, png in picture.tiles
    )
    caption = html.escape(picture.caption)
    return f'<section class="picture"><h3>{caption}</h3><div class="tiles">{tiles}</div></section>'


# Nothing but the page's own images (data: URIs) and inline style may load: no script, font or request.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 2rem auto; max-width: 70rem;
       padding: 0 1rem; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; }
h3 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
table.metrics { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { padding: .3rem .7rem; border-bottom: 1px solid #ddd; text-align: right; }
table.metrics th[scope=row], table.metrics thead th:first-child { text-align: left; }
table.metrics thead th { border-bottom: 2px solid #888; }
table.metrics tfoot { color: #666; font-style: italic; }
img { max-width: 100%; height: auto; }
.tiles { display: flex; flex-wrap: wrap; gap: .6rem; }
.tiles figure { margin: 0; text-align: center; }
img.tile { width: 11rem; border: 1px solid #ccc; }
figcaption { font-size: .85rem; color: #444; }
"""


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of the page, e.g. one model: a heading, notes, its table, its curves and its gallery."""

    heading: str
    table: MetricTable
    notes: Sequence[str] = ()
    curves_png: bytes | None = None
    pictures: Sequence[Picture] = ()


def render_report(
    title: str,
    table: "MetricTable | Sequence[Section]",
    curves_png: bytes | None = None,
    pictures: Sequence[Picture] = (),
    notes: Sequence[str] = (),
) -> str:
    """The report page as a string; `write_report` takes the same arguments and saves it."""
    esc = html.escape
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        *(f"<p>{esc(note)}</p>" for note in notes),
        "<p>Mean [95% bootstrap interval] over the images; the best of each column in bold"
        " (↑ higher is better, ↓ lower).</p>",
    ]
    if isinstance(table, MetricTable):
        parts += _html_section(Section("", table, (), curves_png, pictures), "h2")
    else:
        for section in table:
            parts += [f"<h2>{esc(section.heading)}</h2>", *_html_section(section, "h3")]
    return "\n".join([*parts, "</body></html>\n"])


def _html_section(section: Section, level: str) -> list[str]:
    parts = [*(f"<p>{html.escape(note)}</p>" for note in section.notes)]
    parts += [f"<{level}>Metrics</{level}>", _html_table(section.table)]
    if section.curves_png is not None:
        parts += [
            f"<{level}>Randomisation curves</{level}>",
            f"<figure>{_img(section.curves_png, 'randomisation curves', 'curves')}</figure>",
        ]
    if section.pictures:
        parts += [f"<{level}>Maps</{level}>", *(_html_picture(picture) for picture in section.pictures)]
    return parts


def write_report(
    path: str | os.PathLike,
    title: str,
    table: "MetricTable | Sequence[Section]",
    curves_png: bytes | None = None,
    pictures: Sequence[Picture] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Writes the evaluation's report, one self-contained HTML page, atomically.

    Args:
        path: the page to write (e.g. `out / "report.html"`); missing parent folders are created.
        title: the page's title and heading (plain text, escaped).
        table: from `metric_table`; or a sequence of `Section`s (e.g. one per model), each with its
            own table, notes, curves and gallery, and then `curves_png` and `pictures` are unused.
        curves_png: PNG bytes of the randomisation curves, or None to leave that section out.
        pictures: the gallery, one `Picture` per image, each with every method's map side by side.
        notes: paragraphs of plain text under the title (model, data, settings).

    Returns:
        The written `Path`.

    Raises:
        InputError: an image is not PNG bytes.
    """
    page = render_report(title, table, curves_png, pictures, notes)  # fails before the file is touched
    return write_atomically(path, lambda file: file.write(page.encode("utf-8")))
