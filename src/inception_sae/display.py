"""How numbers and signs are shown to people: one rule for the reports, explain pages and the site.

The site's ``SAE.fmt`` / ``SAE.pval`` / ``SAE.pct`` and ``SAE.SIGN`` (``site/static/core.js``) implement the
same rule and colours; ``tests/test_display.py`` checks that both give the same text for the same numbers.

- :func:`fmt_num`: significant digits, not fixed decimals; scientific (``3.5e-4``, ``1.2e+5``) when the rounded
  magnitude is below 1e-3 or from 1e5 on; a nonzero value never prints as 0. Halves round away from zero
  on the value's exact binary expansion (as JavaScript's ``toPrecision`` / ``toFixed`` do).
- :func:`fmt_p`: p- and q-values to two significant digits, with more where fewer would round across (or onto)
  a significance line (0.01, 0.05); below 1e-300 (an underflowed p, 0 included): ``< 1e-300``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

#: Edges (and bars) of a positive weight / term: excites, pushes up. Also ``SAE.SIGN.positive`` in core.js.
POSITIVE_COLOUR = "#2764c4"
#: Edges (and bars) of a negative weight / term: inhibits, pushes down. Also ``SAE.SIGN.negative`` in core.js.
NEGATIVE_COLOUR = "#b3261e"
#: Significance lines a p- or q-value is never rounded across.
P_LINES = (0.01, 0.05)
#: Smaller p-values are shown as ``< 1e-300`` (they underflowed or are zero).
P_FLOOR = 1e-300


def sign_colour(x: float) -> str:
    """:data:`POSITIVE_COLOUR` for x >= 0, else :data:`NEGATIVE_COLOUR`."""
    return POSITIVE_COLOUR if x >= 0 else NEGATIVE_COLOUR


def _strip(s: str) -> str:
    return s.rstrip("0").rstrip(".") if "." in s else s


def fmt_num(x: float | None, sig: int = 3) -> str:
    """``x`` to ``sig`` significant digits (see the module docstring); None and NaN: '–'."""
    if x is None:
        return "–"
    x = float(x)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    d = Decimal(x)  # the exact binary value
    r = d.quantize(Decimal(1).scaleb(d.adjusted() - sig + 1), rounding=ROUND_HALF_UP)
    e = r.adjusted()
    if e < -3 or e >= 5:  # |r| < 1e-3 or |r| >= 1e5
        return f"{_strip(format(r.scaleb(-e), 'f'))}e{e:+d}"
    return _strip(format(d.quantize(Decimal(1).scaleb(-max(0, sig - 1 - e)), rounding=ROUND_HALF_UP), "f"))


def _crosses(p: float, shown: float, lines: tuple[float, ...]) -> bool:
    return any((p > t) != (shown > t) or (p < t) != (shown < t) for t in lines)


def fmt_p(p: float | None, sig: int = 2, lines: tuple[float, ...] = P_LINES) -> str:
    """A p- or q-value: :func:`fmt_num` at ``sig`` digits, more where fewer would cross one of ``lines``."""
    if p is None or p != p:
        return "–"
    p = float(p)
    if p < P_FLOOR:
        return "< 1e-300"
    text = fmt_num(p, sig)
    while sig < 17 and _crosses(p, float(text), lines):
        sig += 1
        text = fmt_num(p, sig)
    return text


def round_p(p: float | None, sig: int = 3, lines: tuple[float, ...] = P_LINES) -> float | None:
    """``p`` as a number with ``sig`` significant digits (more where fewer would cross one of ``lines``), for data."""
    if p is None or p != p:
        return None
    p = float(p)
    if p == 0 or math.isinf(p):
        return p
    value = float(fmt_num(p, sig))
    while sig < 17 and _crosses(p, value, lines):
        sig += 1
        value = float(fmt_num(p, sig))
    return value


def fmt_pct(x: float | None, decimals: int = 1, signed: bool = False) -> str:
    """``x`` (a fraction) as a percentage with ``decimals`` decimals; a nonzero one that would show 0 gets digits."""
    if x is None or x != x:
        return "–"
    v = 100 * float(x)
    text = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    if v != 0 and float(text) == 0:
        text = ("+" if signed and v > 0 else "") + fmt_num(v, 2)
    return text + "%"
