"""Tail metrics: LaR, VaR/ES of bad debt, Wilson intervals, distribution summaries (known values + properties)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delever.errors import DeleverInputError
from delever.metrics import (
    distribution_summary,
    expected_shortfall,
    liquidations_at_risk,
    probability,
    quantile,
    tail_metrics,
    value_at_risk,
    wilson_interval,
)

SETTINGS = settings(max_examples=60, deadline=None)
losses = st.lists(st.floats(0.0, 1e12, allow_nan=False), min_size=1, max_size=300)


def test_quantile_is_numpys_linear_interpolation():
    assert quantile([1, 2, 3, 4], 0.5) == 2.5
    assert quantile([10.0], 0.99) == 10.0
    x = np.arange(1.0, 101.0)
    assert quantile(x, 0.95) == pytest.approx(95.05)  # position (n-1) q = 94.05 -> 95 + 0.05
    assert quantile([3, None, 1, float("nan"), 2], 0.5) == 2.0  # None / NaN dropped


def test_var_and_es_on_a_known_sample():
    x = np.arange(1.0, 101.0)  # 1..100
    assert value_at_risk(x, 0.95) == pytest.approx(95.05)
    assert expected_shortfall(x, 0.95) == pytest.approx(np.mean([96, 97, 98, 99, 100]))
    assert value_at_risk(x, 0.99) == pytest.approx(99.01)
    assert expected_shortfall(x, 0.99) == 100.0
    zeros = np.zeros(50)
    assert value_at_risk(zeros, 0.99) == 0.0 and expected_shortfall(zeros, 0.99) == 0.0
    # one large loss in 100 paths: VaR99 interpolates, ES99 is that loss
    y = np.zeros(100)
    y[-1] = 1e6
    assert value_at_risk(y, 0.99) == pytest.approx(0.01 * 1e6)
    assert expected_shortfall(y, 0.99) == 1e6


def test_lar_names_and_values():
    liq = np.linspace(0.0, 1e9, 1001)
    assert liquidations_at_risk(liq) == {"lar_95_usd": pytest.approx(9.5e8), "lar_99_usd": pytest.approx(9.9e8)}
    assert set(liquidations_at_risk(liq, levels=(0.9, 0.995))) == {"lar_90_usd", "lar_99.5_usd"}


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 10, 0.0, 0.2775),   # published Wilson 95 % intervals (Newcombe 1998, method 3)
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 100, 0.0018, 0.0545),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_known_values(k, n, lo, hi):
    got_lo, got_hi = wilson_interval(k, n)
    assert got_lo == pytest.approx(lo, abs=1e-4) and got_hi == pytest.approx(hi, abs=1e-4)


@SETTINGS
@given(n=st.integers(1, 10_000), frac=st.floats(0.0, 1.0))
def test_wilson_interval_contains_the_estimate_and_stays_in_0_1(n, frac):
    k = int(round(frac * n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert hi - lo > 0
    lo4, hi4 = wilson_interval(4 * k, 4 * n)  # more paths, same share: a narrower interval
    assert hi4 - lo4 < hi - lo


@SETTINGS
@given(x=losses, level=st.floats(0.5, 0.999))
def test_es_is_at_least_var_and_at_most_the_worst_loss(x, level):
    var, es = value_at_risk(x, level), expected_shortfall(x, level)
    assert min(x) <= var <= max(x)
    assert var <= es * (1 + 1e-12) + 1e-9 and es <= max(x) * (1 + 1e-12)
    assert value_at_risk(x, 0.99) >= value_at_risk(x, 0.95)
    # invariant to the order of the paths
    assert expected_shortfall(list(reversed(x)), level) == pytest.approx(es, rel=1e-12)


def test_probability_reports_share_count_and_interval():
    pr = probability([True, False, False, True, False])
    assert pr["p"] == 0.4 and pr["count"] == 2 and pr["paths"] == 5
    assert pr["ci95"] == list(wilson_interval(2, 5))


def test_distribution_summary_drops_nan_and_names_quantiles():
    d = distribution_summary([1.0, 2.0, 3.0, 4.0, None, float("nan")])
    assert d["n"] == 4 and d["dropped"] == 2 and d["mean"] == 2.5 and d["min"] == 1.0 and d["max"] == 4.0
    assert d["p50"] == 2.5 and d["p01"] == pytest.approx(1.03) and d["p99"] == pytest.approx(3.97)
    assert list(d)[5:] == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    empty = distribution_summary([None, float("nan")])
    assert empty["n"] == 0 and empty["p50"] is None and empty["mean"] is None


def _table(n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    liq = rng.lognormal(17, 1, n)
    bad = np.where(rng.random(n) < 0.1, rng.lognormal(14, 1, n), 0.0)
    adl = np.where(rng.random(n) < 0.2, rng.lognormal(15, 1, n), 0.0)
    amp = 1 + rng.random(n)
    amp[0] = np.nan
    return {"liquidated_notional_usd": liq, "bad_debt_usd": bad, "adl_notional_usd": adl,
            "adl_count": (adl > 0).astype(np.int64) * 3, "insurance_depleted": (bad > 0) | (adl > 0),
            "amplification": amp}


def test_tail_metrics_from_a_mapping_and_from_an_arrow_table_agree():
    cols = _table()
    m = tail_metrics(cols)
    arrow = pa.table({k: pa.array(v.tolist() if k != "amplification" else
                                  [None if math.isnan(a) else a for a in v]) for k, v in cols.items()})
    assert tail_metrics(arrow) == m
    assert m["paths"] == 200
    assert m["lar_95_usd"] == np.quantile(cols["liquidated_notional_usd"], 0.95)
    assert m["lar_99_usd"] == np.quantile(cols["liquidated_notional_usd"], 0.99)
    bad = cols["bad_debt_usd"]
    assert m["bad_debt_var_95_usd"] == np.quantile(bad, 0.95)
    assert m["bad_debt_var_99_usd"] == np.quantile(bad, 0.99)
    assert m["bad_debt_es_99_usd"] == bad[bad >= np.quantile(bad, 0.99)].mean()
    assert m["p_insurance_depleted"] == cols["insurance_depleted"].mean()
    assert m["p_adl"] == (cols["adl_count"] > 0).mean()
    assert m["p_bad_debt"] == (bad > 0).mean()
    assert m["amplification_dist"]["dropped"] == 1
    assert m["amplification_p50"] == np.nanquantile(cols["amplification"], 0.5)
    assert m["adl_notional_dist"]["p99"] == np.quantile(cols["adl_notional_usd"], 0.99)


def test_bad_input_is_refused_with_a_named_field():
    with pytest.raises(DeleverInputError, match="bad_debt_usd: expected at least one finite outcome"):
        value_at_risk([], 0.95, "bad_debt_usd")
    with pytest.raises(DeleverInputError, match="strictly between 0 and 1"):
        value_at_risk([1.0, 2.0], 1.0)
    with pytest.raises(DeleverInputError, match="infinite"):
        expected_shortfall([1.0, float("inf")], 0.95)
    with pytest.raises(DeleverInputError, match="quantile level"):
        quantile([1.0], 1.5)
    with pytest.raises(DeleverInputError, match="trials"):
        wilson_interval(0, 0)
    with pytest.raises(DeleverInputError, match="successes"):
        wilson_interval(5, 4)
    cols = _table()
    del cols["bad_debt_usd"]
    with pytest.raises(DeleverInputError, match="missing column.*bad_debt_usd"):
        tail_metrics(cols)
    with pytest.raises(DeleverInputError, match="at least one"):
        tail_metrics({k: np.array([]) for k in _table()})
