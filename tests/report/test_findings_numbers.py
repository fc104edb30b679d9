"""How the findings print numbers: a bound that rounds to zero is printed without a sign."""

from sensitivity.report.findings import _unsigned_zero


def test_a_negative_bound_that_rounds_to_zero_prints_as_zero():
    assert _unsigned_zero("-0.0") == "0.0"
    assert _unsigned_zero("-0.00 %") == "0.00 %"
    assert _unsigned_zero("-0.01") == "-0.01"
    assert _unsigned_zero("-10") == "-10"
    assert _unsigned_zero("7.7") == "7.7"
