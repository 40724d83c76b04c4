import math

import pytest
import torch

from stereodistill.distill.weights import (
    Constant,
    DynamicWeightAverage,
    Ramp,
    StepDecay,
    UncertaintyWeighting,
    build_schedule,
    build_weighting,
)
from stereodistill.errors import ConfigError


def test_step_decay_divides_at_listed_epochs_like_the_dsnet_code():
    schedule = build_schedule({"type": "step", "value": 5.0, "rate": 10, "epochs": [1, 2, 4]})
    assert isinstance(schedule, StepDecay)
    values = [schedule(0, e) for e in (0, 0.99, 1, 1.5, 2, 3.9, 4, 10)]
    assert values == pytest.approx([5, 5, 0.5, 0.5, 0.05, 0.05, 0.005, 0.005])


def test_ramps():
    lin = build_schedule({"type": "linear", "start": 0, "end": 2, "steps": 10, "begin": 5})
    assert [lin(s, 0) for s in (0, 5, 10, 15, 100)] == pytest.approx([0, 0, 1, 2, 2])
    cos = build_schedule({"type": "cosine", "start": 1, "end": 0, "steps": 4})
    assert isinstance(cos, Ramp) and cos(2, 0) == pytest.approx(0.5) and cos(0, 0) == 1 and cos(4, 0) == 0
    assert build_schedule(3) == Constant(3.0)


@pytest.mark.parametrize("spec", [True, {"type": "exp"}, {"type": "step", "value": 1}, {"type": "linear", "end": 1}])
def test_bad_schedules_are_config_errors(spec):
    with pytest.raises(ConfigError):
        build_schedule(spec)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_a_step_decay_rate_that_would_divide_by_zero_or_turn_the_weight_negative_is_refused(rate):
    with pytest.raises(ConfigError, match=r"^kl\.rate: the weight is divided by it .* above 0, got"):
        build_schedule({"type": "step", "value": 1, "epochs": [1], "rate": rate}, "kl")


def test_uncertainty_weighting_learns_and_is_clamped():
    weighting = UncertaintyWeighting(["a", "b"], clamp=2.0)
    losses = {"a": torch.tensor(4.0), "b": torch.tensor(0.25)}
    total, factors = weighting(losses)
    assert total.item() == pytest.approx(0.5 * 4 + 0.5 * 0.25)
    assert factors == {"a": 0.5, "b": 0.5}
    opt = torch.optim.SGD(weighting.parameters(), lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        weighting(losses)[0].backward()
        opt.step()
    s = weighting.log_vars.detach()
    # Optimum s_k = log L_k, within the clamp: the large loss gets the larger variance (smaller weight).
    assert s[0] > s[1]
    weighting.log_vars.data.fill_(100.0)
    _, factors = weighting(losses)
    assert factors["a"] == pytest.approx(0.5 * math.exp(-2.0))


def test_dwa_reweights_from_the_third_epoch_and_keeps_state():
    dwa = DynamicWeightAverage(["fast", "slow"], temperature=1.0)
    losses = {"fast": torch.tensor(1.0), "slow": torch.tensor(1.0)}
    assert dwa(losses)[1] == {"fast": 1.0, "slow": 1.0}
    dwa.end_epoch({"fast": 1.0, "slow": 1.0})
    assert dwa(losses)[1] == {"fast": 1.0, "slow": 1.0}
    dwa.end_epoch({"fast": 0.5, "slow": 1.0})  # fast fell by half, slow did not
    weights = dwa(losses)[1]
    assert weights["slow"] > 1.0 > weights["fast"]
    assert sum(weights.values()) == pytest.approx(2.0)
    restored = DynamicWeightAverage(["fast", "slow"], temperature=1.0)
    restored.load_state_dict(dwa.state_dict())
    assert restored(losses)[1] == pytest.approx(weights)


def test_dwa_goes_on_reweighting_when_a_stage_leaves_a_term_out_of_an_epoch():
    dwa = DynamicWeightAverage(["fast", "slow", "late"], temperature=1.0)
    dwa.end_epoch({"fast": 1.0, "slow": 1.0})  # "late" is not active yet
    dwa.end_epoch({"fast": 0.5, "slow": 1.0})
    losses = {name: torch.tensor(1.0) for name in ("fast", "slow", "late")}
    weights = dwa(losses)[1]
    assert weights["slow"] > 1.0 > weights["fast"]  # it used to stay at 1 for as long as "late" was absent
    assert weights["late"] == pytest.approx(weights["slow"])  # no rate of its own: counted as level
    assert sum(weights.values()) == pytest.approx(3.0)


def test_build_weighting():
    assert isinstance(build_weighting({"type": "uncertainty"}, ["a"]), UncertaintyWeighting)
    total, _ = build_weighting(None, ["a"])({"a": torch.tensor(2.0), "b": torch.tensor(1.0)})
    assert total.item() == 3.0
    with pytest.raises(ConfigError, match="unknown weighting"):
        build_weighting({"type": "magic"}, ["a"])


@pytest.mark.parametrize(
    "spec",
    [
        -1,
        float("nan"),
        float("inf"),
        {"type": "linear", "end": -1, "steps": 4},
        {"type": "step", "value": -2, "epochs": [1]},
    ],
)
def test_negative_or_non_finite_weights_are_config_errors(spec):
    with pytest.raises(ConfigError, match="a weight must be a finite number >= 0"):
        build_schedule(spec, "photometric.weight")
