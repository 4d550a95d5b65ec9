"""Epsilons are shown rounded up, never down, in every view."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securefed.privacy.display import epsilon_text, round_up


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (0.999948, 4, "1"),  # not 0.9999: nearest rounding would claim more privacy
        (0.99994, 4, "1"),
        (0.9999, 4, "0.9999"),  # already 4 figures: unchanged
        (14.821176704188296, 4, "14.83"),
        (14.821176704188296, 3, "14.9"),
        (16.0, 4, "16"),
        (0.1, 4, "0.1"),  # the decimal a user wrote stays as written
        (8.000000001, 4, "8.001"),
        (12345.2, 4, "12346"),
        (math.inf, 4, "∞"),
        ("inf", 4, "∞"),
        (None, 4, None),
    ],
)
def test_epsilon_is_rounded_up(value, digits, shown):
    assert epsilon_text(value, digits) == shown


def test_terminal_infinity_and_bad_digits():
    assert epsilon_text("inf", 3, infinity="inf") == "inf"
    with pytest.raises(ValueError, match="digits"):
        round_up(1.0, 0)


@given(
    value=st.floats(min_value=1e-6, max_value=9999.0, allow_nan=False),
    digits=st.integers(1, 6),
)
def test_shown_value_is_never_below_the_computed_one(value, digits):
    shown = float(epsilon_text(value, digits))
    assert shown >= value
    assert shown <= value * (1 + 10 ** (1 - digits)) * (1 + 1e-12)  # and no more than 1 unit up


def test_the_audit_and_the_sweep_table_show_0_999948_as_1():
    from securefed.audit.institution import institution_markdown
    from securefed.sweep.table import SweepTable

    section = {
        "protects": "p",
        "neighbouring_relation": "r",
        "mechanism": "skellam",
        "bits": 20,
        "clip_norm": 1.0,
        "calibrated_for_survivors": 18,
        "colluders": 1,
        "epsilon": 0.999948,
        "delta": 1e-5,
        "target_epsilon": 1.0,
        "gaussian_reference_epsilon": 0.999948,
        "invitation_rate": 0.4,
        "claimed_sample_rate": 1.0,
        "accountant": "a",
        "noise_contributors_by_round": {"0": 20},
        "caveats": [],
    }
    text = institution_markdown(section)
    assert "**Epsilon 1**" in text and "0.9999" not in text
    row = {"cell": "c", "status": "done", "eps_max": 0.999948, "eps_mean": 0.999948}
    table = SweepTable((), [row]).to_markdown("t")
    assert "| 1 | 1 |" in table and "0.9999" not in table
