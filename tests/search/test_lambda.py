"""lambda, the multiplier of the target-FPS constraint: dual ascent in log space (lambda_update)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codax.errors import ConfigError
from codax.search.config import load_config
from codax.search.cosearch import lambda_update

lams = st.floats(1e-3, 10.0)
fpss = st.floats(1e3, 1e6)
steps = st.floats(1.001, 1.5)
bands = st.floats(0.01, 0.5)


@given(lams, fpss, fpss, steps, bands)
def test_lambda_moves_against_the_miss_by_at_most_one_step(lam, fps, target, step, band):
    new = lambda_update(lam, fps, target, step, band)
    assert lam / step * (1 - 1e-12) <= new <= lam * step * (1 + 1e-12)
    miss = (target - fps) / target  # below float resolution (~1e-16) a step of 1.0 is exact
    if miss > 1e-9:  # too slow: more hardware pressure
        assert new > lam
    elif miss < -1e-9:  # slack: less pressure, whatever the size of the slack
        assert new < lam
    else:
        assert new == pytest.approx(lam, rel=1e-9)


@given(lams, st.floats(1e3, 1e6), steps, bands, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_lambda_step_grows_with_the_miss_up_to_the_band(lam, target, step, band, a, b):
    small, large = sorted((a, b))
    move = lambda m: math.log(lambda_update(lam, target * (1 + m * band), target, step, band) / lam)  # noqa: E731
    assert abs(move(small)) <= abs(move(large)) + 1e-12
    assert move(1.0) == pytest.approx(-math.log(step))  # a full step at the band
    assert move(3.0) == pytest.approx(-math.log(step))  # and no more beyond it


def test_lambda_settles_on_the_target_rather_than_anywhere_above_it():
    """A design whose FPS falls as lambda's pressure eases (fps = f0 * lambda^0.3): dual ascent
    brings it to the target from 8% above it; holding lambda anywhere in [target, 1.1 target]
    would have left it there."""
    target, lam = 100_000.0, 1.0
    fps = lambda lam: 108_000.0 * lam**0.3  # noqa: E731
    for _ in range(200):
        lam = lambda_update(lam, fps(lam), target, 1.05, 0.1)
    assert fps(lam) == pytest.approx(target, rel=2e-3)


@pytest.mark.parametrize("key,value", [("target_band", 0.0), ("lambda_step", 0.9)])
def test_lambda_controller_settings_are_validated(tiny, key, value):
    tiny["search"][key] = value
    with pytest.raises(ConfigError, match=f"search.{key}"):
        load_config(tiny)
