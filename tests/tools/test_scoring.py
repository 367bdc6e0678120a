"""The backtest summary: every model's means over the same series, and a warning where one falls short."""

from __future__ import annotations

import math

from tsf_adapter.tools.scoring import Score, common_series, summary_table

NAN = math.nan


def score(series: str, model: str, mae: float, missing: float = 0.0) -> Score:
    return Score(series, model, 10, mae, mae / 2, mae / 4, 0.8, missing)


SCORES = [
    score("a", "lstm", 1.0),
    score("a", "last_value", 2.0),
    score("a", "seasonal_naive", 4.0, missing=0.5),
    score("b", "lstm", 100.0),
    score("b", "last_value", 100.0),
    score("b", "seasonal_naive", NAN, missing=1.0),  # less than a season before every origin
]


def test_the_means_are_over_the_series_every_model_scored() -> None:
    assert common_series(SCORES) == ["a"]
    table = summary_table(SCORES).splitlines()
    assert (
        table[0] == "1 of 2 series (those every model scored); geometric means across series (coverage: mean)"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table if line.startswith("| ")}
    # Series b (MAE 100 for both) would have pulled lstm's and last_value's means up, not seasonal_naive's.
    assert rows["lstm"][1] == "1" and rows["last_value"][1] == "2" and rows["seasonal_naive"][1] == "4"
    assert rows["lstm"][6] == "0.5"  # MAE / last_value, on the same series


def test_a_model_that_cannot_score_part_of_the_range_is_named() -> None:
    warnings = [line for line in summary_table(SCORES).splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: seasonal_naive has no forecast for 50.0% of the rows of a (e.g. a seasonal model with"
        " less than a season of history); its scores there cover the rest",
        "warning: seasonal_naive has no score for b; it is left out of every model's means",
    ]


def test_a_model_without_any_rows_for_a_series_leaves_it_out_too() -> None:
    scores = [score("a", "lstm", 1.0), score("a", "last_value", 2.0), score("b", "lstm", 3.0)]
    assert common_series(scores) == ["a"]
    assert "warning: last_value has no score for b; it is left out of every model's means" in summary_table(
        scores
    )


def test_all_scored_says_so_plainly_without_warnings() -> None:
    scores = [score("a", "lstm", 1.0), score("a", "last_value", 2.0)]
    text = summary_table(scores)
    assert text.splitlines()[0] == "1 series; geometric means across series (coverage: mean)"
    assert "warning" not in text
