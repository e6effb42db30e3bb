"""One rule for numbers and one pair of sign colours, in Python (inception_sae.display) and on the site (core.js)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inception_sae.display import NEGATIVE_COLOUR, POSITIVE_COLOUR, fmt_num, fmt_p, fmt_pct, round_p

CORE_JS = Path(__file__).resolve().parents[1] / "src" / "inception_sae" / "site" / "static" / "core.js"

NUMBERS = [
    (0.0049999, 2, "0.005"), (0.005, 2, "0.005"), (0.0015, 2, "0.0015"), (-0.0035, 2, "-0.0035"),
    (1e-12, 3, "1e-12"), (1e-320, 3, "1e-320"), (0, 3, "0"), (-0.0, 3, "0"), (0.00035, 2, "3.5e-4"),
    (-2.5e-7, 3, "-2.5e-7"), (12.345, 3, "12.3"), (0.5, 3, "0.5"), (0.99996, 3, "1"), (9.9996, 3, "10"),
    (0.000999996, 3, "0.001"), (123456, 3, "1.23e+5"), (99999, 3, "1e+5"), (12345.6, 3, "12346"), (0.125, 2, "0.13"),
    (-0.125, 2, "-0.13"), (2.5, 1, "3"), (1234.5678, 4, "1235"), (None, 3, "–"), (float("nan"), 3, "–"),
]  # fmt: skip
P_VALUES = [
    (0.0099, "0.0099"), (0.0101, "0.0101"), (0.01, "0.01"), (0.0499, "0.0499"), (0.0501, "0.0501"),
    (0.05, "0.05"), (0.00999999, "0.00999999"), (0.010004, "0.010004"), (0.0123, "0.012"), (0.3, "0.3"),
    (0.00049, "4.9e-4"), (1e-12, "1e-12"), (1e-320, "< 1e-300"), (0, "< 1e-300"), (1.0, "1"), (None, "–"),
]  # fmt: skip


@pytest.mark.parametrize(("x", "sig", "text"), NUMBERS)
def test_numbers_keep_significant_digits_and_never_show_a_nonzero_value_as_0(x, sig, text):
    assert fmt_num(x, sig) == text


@pytest.mark.parametrize(("p", "text"), P_VALUES)
def test_p_values_are_never_rounded_across_a_significance_line(p, text):
    assert fmt_p(p) == text
    if p is not None and p > 1e-300:
        for line in (0.01, 0.05):  # the shown value is on the same side of each line as the value (or on it)
            shown = float(fmt_p(p))
            assert (shown > line) == (p > line) and (shown < line) == (p < line), (p, line)
            assert (round_p(p) > line) == (p > line) and (round_p(p) < line) == (p < line), (p, line)


def test_percentages_never_show_a_nonzero_share_as_0():
    assert fmt_pct(1e-5) == "0.001%" and fmt_pct(-0.0004, signed=True) == "-0.04%"
    assert fmt_pct(0.5) == "50.0%" and fmt_pct(0.25, signed=True) == "+25.0%" and fmt_pct(0) == "0.0%"


def test_the_sign_colours_are_the_same_in_python_and_on_the_site():
    js = CORE_JS.read_text()
    m = re.search(r"SAE\.SIGN = \{ positive: '(#[0-9a-f]{6})', negative: '(#[0-9a-f]{6})' \}", js)
    assert m, "core.js no longer defines SAE.SIGN as expected"
    assert (m.group(1), m.group(2)) == (POSITIVE_COLOUR, NEGATIVE_COLOUR)
    assert POSITIVE_COLOUR != NEGATIVE_COLOUR


def test_the_circuit_figure_draws_edges_and_legend_in_the_sign_colours(tmp_path, monkeypatch):
    import matplotlib.axes
    from matplotlib.colors import to_hex

    from inception_sae.circuits.graph import CircuitGraph, render

    g = CircuitGraph()
    g.add_edges([("mixed4c/f/1", "mixed4d/f/2", 0.5, "weight"), ("mixed4c/f/1", "mixed4d/f/3", -0.5, "weight")])
    drawn, real_plot = [], matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):
        drawn.append(to_hex(kw["color"]))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    legends = []
    real_legend = matplotlib.axes.Axes.legend
    monkeypatch.setattr(
        matplotlib.axes.Axes, "legend", lambda self, **kw: legends.append(kw) or real_legend(self, **kw)
    )
    render(g, tmp_path / "g")
    assert drawn == [POSITIVE_COLOUR, NEGATIVE_COLOUR]
    handles = {h.get_label(): to_hex(h.get_color()) for h in legends[0]["handles"] if h.get_label() != "data-based"}
    assert handles["excites (blue)"] == POSITIVE_COLOUR and handles["inhibits (red)"] == NEGATIVE_COLOUR


@pytest.mark.browser
def test_the_site_formats_numbers_as_python_does(page):
    page.set_content("<html><body><div id='banner'></div></body></html>")
    page.add_script_tag(path=str(CORE_JS))
    xs = [x for x, _, _ in NUMBERS if x is not None and x == x]
    xs += [1.005, 0.0045, -0.015, 3.14159e-9, 4.5e-4, 0.00049999, 6.02e23, 1e5, 99999.5, 0.1 + 0.2, 2e-310]
    for sig in (1, 2, 3, 4):
        js = page.evaluate(f"xs => xs.map((x) => SAE.fmt(x, {sig}))", xs)
        assert js == [fmt_num(x, sig) for x in xs], sig
    ps = [p for p, _ in P_VALUES if p is not None] + [0.0100001, 0.049999, 0.05000001, 0.00999, 0.0105]
    assert page.evaluate("ps => ps.map((p) => SAE.pval(p))", ps) == [fmt_p(p) for p in ps]
    assert page.evaluate("[SAE.fmt(null), SAE.fmt(NaN), SAE.pval(null)]") == ["–", "–", "–"]
    pcts = [1e-5, -0.0004, 0.5, 0.25, 0]
    assert page.evaluate("xs => xs.map((x) => SAE.pct(x, 1))", pcts) == [fmt_pct(x) for x in pcts]
    assert page.evaluate("SAE.range(0.10001, 0.10004, 2)") == ["0.10001", "0.10004"]
    assert page.evaluate("SAE.range(0.1, 0.2, 2)") == ["0.1", "0.2"]
    assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--positive')") == POSITIVE_COLOUR
