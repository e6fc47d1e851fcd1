"""A benchmark's verdict line never shows a figure that reads as the other verdict."""

from __future__ import annotations

import re

import pytest

from bench.measure import target

LINE = re.compile(
    r"^TARGET x: (?P<value>-?[\d.]+) \(target (?P<sign>[<>]=) (?P<limit>[\d.]+)\) (?P<v>PASS|FAIL)$"
)


@pytest.mark.parametrize(
    ("value", "limit", "at_most", "printed", "verdict"),
    [
        (0.298, 0.3, False, "0.298", "FAIL"),  # 0.30 would read as a pass
        (0.2999, 0.3, False, "0.2999", "FAIL"),
        (0.3, 0.3, False, "0.30", "PASS"),
        (0.302, 0.3, False, "0.30", "PASS"),
        (0.317, 0.3, False, "0.32", "PASS"),
        (1.2501, 1.25, True, "1.2501", "FAIL"),  # 1.25 would read as a pass
        (1.2449, 1.25, True, "1.24", "PASS"),
        (1.248, 1.25, True, "1.25", "PASS"),  # rounds onto the limit, which passes too
        (2.04, 2.7, True, "2.04", "PASS"),
        (1059.0, 1200.0, True, "1059.00", "PASS"),
    ],
)
def test_the_printed_figure_agrees_with_the_verdict(
    capsys: pytest.CaptureFixture[str],
    value: float,
    limit: float,
    at_most: bool,
    printed: str,
    verdict: str,
) -> None:
    passed = target("x", value, limit, at_most=at_most)
    line = LINE.match(capsys.readouterr().out.strip())
    assert line is not None
    assert (line["value"], line["v"]) == (printed, verdict)
    assert passed is (verdict == "PASS")
    shown, bound = float(line["value"]), float(line["limit"])
    assert (shown <= bound if line["sign"] == "<=" else shown >= bound) is passed
