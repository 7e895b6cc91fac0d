"""The dashboard's server-drawn SVG charts: proportional bars, escaped text, an empty chart
that still says something, and what a screen reader is told."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from qrloop.dashboard.charts import FONT, LABEL_CHARS, LABEL_WIDTH, Bar, columns, rows, scale_of

SVG = "{http://www.w3.org/2000/svg}"
DRAWINGS = [columns, rows]


def _parsed(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def _bars(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(f"{SVG}rect[@class='bar']")


def _bars_of(values: list[int]) -> list[Bar]:
    return [Bar(f"{i:02d}:00", value, f"{i:02d}:00: {value}") for i, value in enumerate(values)]


@pytest.mark.parametrize(
    ("largest", "top"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (199, 200), (4001, 5000)],
)
def test_the_scale_is_the_largest_value_rounded_up_to_1_2_or_5(largest: int, top: int) -> None:
    """The top of the scale is at least the largest value, and a round number."""
    assert scale_of(largest) == top


def test_column_heights_are_proportional_to_values() -> None:
    """Each column's height is its value over the scale: 4 is twice 2 and 0 draws nothing."""
    svg = _parsed(columns("c", "By hour", "d", _bars_of([2, 4, 0, 1])))
    heights = [float(rect.attrib["height"]) for rect in _bars(svg)]
    assert heights[1] == pytest.approx(2 * heights[0])
    assert heights[0] == pytest.approx(2 * heights[3])
    assert heights[2] == 0
    # Columns stand on one baseline.
    bottoms = {round(float(r.attrib["y"]) + float(r.attrib["height"]), 2) for r in _bars(svg)}
    assert len(bottoms) == 1


def test_row_lengths_are_proportional_to_values() -> None:
    """Each horizontal bar's length is its value over the scale, all from one left edge."""
    svg = _parsed(rows("s", "By store", "d", _bars_of([30, 10, 15])))
    widths = [float(rect.attrib["width"]) for rect in _bars(svg)]
    assert widths[0] == pytest.approx(3 * widths[1])
    assert widths[2] == pytest.approx(1.5 * widths[1])
    assert len({rect.attrib["x"] for rect in _bars(svg)}) == 1


@pytest.mark.parametrize("draw", DRAWINGS)
def test_the_longest_bar_is_its_value_over_the_round_scale(draw: object) -> None:
    """With a largest value of 7 the scale is 10: the bar fills 70 % of what 10 would."""
    svg = _parsed(draw("x", "t", "d", _bars_of([7, 10])))  # type: ignore[operator]
    dimension = "height" if draw is columns else "width"
    seven, ten = (float(rect.attrib[dimension]) for rect in _bars(svg))
    assert seven == pytest.approx(0.7 * ten)


@pytest.mark.parametrize("draw", DRAWINGS)
def test_text_from_data_is_escaped(draw: object) -> None:
    """A store named like markup is shown as its text: the drawing stays one well-formed SVG
    with no element the name would have opened."""
    name = '<script>alert("x")</script> & Co'
    markup = draw("x", f"Chart of {name}", name, [Bar(name, 3, name)])  # type: ignore[operator]
    assert "<script" not in markup
    svg = _parsed(markup)
    assert svg.find(f".//{SVG}script") is None
    assert svg.find(f"{SVG}title").text == f"Chart of {name}"  # type: ignore[union-attr]
    assert _bars(svg)[0].find(f"{SVG}title").text == name  # type: ignore[union-attr]


@pytest.mark.parametrize("draw", DRAWINGS)
def test_an_empty_chart_says_there_is_nothing_and_draws_no_bar(draw: object) -> None:
    """No data: a baseline and the words "No redemptions to show", still a labelled image."""
    svg = _parsed(draw("x", "By hour", "Nothing in range", []))  # type: ignore[operator]
    assert _bars(svg) == []
    words = [text.text for text in svg.iter(f"{SVG}text")]
    assert words == ["No redemptions to show"]
    assert svg.attrib["role"] == "img"


@pytest.mark.parametrize("draw", DRAWINGS)
def test_all_zero_values_draw_flat_bars_not_a_division_by_zero(draw: object) -> None:
    """Hours with no redemptions at all: bars of no length on a scale of 1."""
    svg = _parsed(draw("x", "t", "d", _bars_of([0, 0, 0])))  # type: ignore[operator]
    dimension = "height" if draw is columns else "width"
    assert [float(rect.attrib[dimension]) for rect in _bars(svg)] == [0, 0, 0]


@pytest.mark.parametrize("draw", DRAWINGS)
def test_a_screen_reader_is_told_the_title_the_summary_and_each_bar(draw: object) -> None:
    """The image is labelled by its `<title>` and `<desc>` (ids it names), carries an
    aria-label, and each bar has a `<title>` of its own."""
    svg = _parsed(
        draw("by-hour", "Redemptions by hour", "12 in 3 hours", _bars_of([5, 7, 0]))  # type: ignore[operator]
    )
    assert svg.attrib["role"] == "img"
    assert svg.attrib["aria-label"] == "Redemptions by hour"
    named = {element.attrib.get("id"): element.text for element in svg.iter()}
    title_id, desc_id = svg.attrib["aria-labelledby"].split()
    assert named[title_id] == "Redemptions by hour"
    assert named[desc_id] == "12 in 3 hours"
    assert [rect.find(f"{SVG}title").text for rect in _bars(svg)] == [  # type: ignore[union-attr]
        "00:00: 5",
        "01:00: 7",
        "02:00: 0",
    ]


def test_many_columns_label_only_every_few_so_labels_never_overlap() -> None:
    """168 hourly columns (a week) keep every column but label only some, at least 60 units
    apart."""
    svg = _parsed(columns("x", "t", "d", _bars_of([1] * 168)))
    assert len(_bars(svg)) == 168
    labels = [
        float(text.attrib["x"])
        for text in svg.iter(f"{SVG}text")
        if text.attrib["text-anchor"] == "middle"
    ]
    assert 2 <= len(labels) < 168
    assert min(b - a for a, b in itertools.pairwise(labels)) >= 55


def test_long_names_are_shortened_with_an_ellipsis_but_titled_whole() -> None:
    """A long store name is cut on the axis, and whole in the bar's title."""
    name = "The Very Long Flagship Store on Nanjing Road"
    svg = _parsed(rows("x", "t", "d", [Bar(name, 1, name)]))
    shown = [text.text or "" for text in svg.iter(f"{SVG}text")]
    assert any(text.endswith("…") and name.startswith(text[:-1]) for text in shown)
    assert _bars(svg)[0].find(f"{SVG}title").text == name  # type: ignore[union-attr]


def test_a_name_at_the_cut_length_fits_left_of_the_bars() -> None:
    """The longest name shown, at 0.6 em a character (wider than an average letter), ends
    before the bars start: a store's name is never drawn off the picture's left edge."""
    svg = _parsed(rows("x", "t", "d", [Bar("W" * 40, 1, "W" * 40)]))
    (label,) = [t for t in svg.iter(f"{SVG}text") if t.attrib["text-anchor"] == "end"]
    assert len(label.text or "") == LABEL_CHARS
    assert float(label.attrib["x"]) - LABEL_CHARS * 0.6 * FONT >= 0
    assert float(label.attrib["x"]) < LABEL_WIDTH
