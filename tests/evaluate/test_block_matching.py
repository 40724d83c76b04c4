import pytest
import torch

from stereodistill.evaluate.block_matching import block_matching
from stereodistill.evaluate.evaluator import evaluate_dataset


def shifted_pair(disparity: int, h: int = 24, w: int = 64):
    g = torch.Generator().manual_seed(1)
    left = torch.rand(1, 3, h, w, generator=g)
    right = torch.roll(left, -disparity, dims=-1)  # left x matches right x − d
    return left, right


@pytest.mark.parametrize("disparity", [0, 3, 7])
def test_recovers_a_constant_shift(disparity):
    left, right = shifted_pair(disparity)
    pred = block_matching(left, right, max_disp=16)
    assert pred.shape == (1, 24, 64)
    # Away from the wrapped border, the shift is found to sub-pixel accuracy.
    assert (pred[0, :, 12:-4] - disparity).abs().mean() < 0.1


def test_refuses_mismatched_views():
    with pytest.raises(ValueError, match="differ"):
        block_matching(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), 4)


def test_evaluator_runs_a_predictor_over_a_dataset():
    left, right = shifted_pair(5)
    disp = torch.full((24, 64), 5.0)
    valid = torch.ones(24, 64, dtype=torch.bool)
    valid[:, :12] = False
    dataset = [
        {"left": left[0], "right": right[0], "disp": disp, "valid": valid, "meta": {"id": f"s{i}"}} for i in range(2)
    ]
    seen = []
    acc = evaluate_dataset(
        lambda left, right: block_matching(left, right, 16), dataset, progress=lambda done, total: seen.append(done)
    )
    assert seen == [1, 2]
    assert [row["id"] for row in acc.per_image] == ["s0", "s1"]
    assert acc.pooled()["epe"] < 0.1
    assert acc.pooled()["bad1"] < 0.01
