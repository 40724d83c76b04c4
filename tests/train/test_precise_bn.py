import pytest
import torch
from torch import nn

from stereodistill.checkpoint import load_model
from stereodistill.errors import ConfigError
from stereodistill.train.precise_bn import recompute_batchnorm
from stereodistill.train.trainer import Trainer

from .test_trainer import TINY, config


class TwoViews(nn.Module):
    """A BatchNorm over the left view's channels; the right view is ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3, momentum=0.1)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(left))


def pairs(sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        {"left": torch.rand(3, h, w, generator=generator) * (i + 1), "right": torch.rand(3, h, w, generator=generator)}
        for i, (h, w) in enumerate(sizes)
    ]


def test_the_statistics_are_the_plain_average_over_whole_pairs_and_the_weights_stay():
    data = pairs([(8, 12)] * 4)
    model = TwoViews()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "batches" not in k}
    read = recompute_batchnorm(model, data, batches=4, batch_size=1, seed=0, device=torch.device("cpu"))
    assert read == 4 and not model.training and model.norm.momentum == 0.1
    lefts = torch.stack([p["left"] for p in data])
    expected_mean = lefts.mean(dim=(2, 3)).mean(0)  # each pass one pair: the average of the pairs' means
    n = 8 * 12
    expected_var = (lefts.var(dim=(2, 3), unbiased=False) * n / (n - 1)).mean(0)
    torch.testing.assert_close(model.norm.running_mean, expected_mean)
    torch.testing.assert_close(model.norm.running_var, expected_var)
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_batch_of_pairs_of_different_sizes_is_cut_to_their_common_centre():
    data = pairs([(8, 12), (10, 16)])
    model = TwoViews()
    recompute_batchnorm(model, data, batches=1, batch_size=2, seed=0, device=torch.device("cpu"))
    centre = torch.stack([data[0]["left"], data[1]["left"][:, 1:9, 2:14]])
    torch.testing.assert_close(model.norm.running_mean, centre.mean(dim=(0, 2, 3)))


def test_more_batches_than_pairs_read_the_set_again_and_draws_are_seeded():
    data = pairs([(8, 12)] * 3)
    first, second = TwoViews(), TwoViews()
    assert recompute_batchnorm(first, data, batches=5, batch_size=2, seed=3, device=torch.device("cpu")) == 10
    recompute_batchnorm(second, data, batches=5, batch_size=2, seed=3, device=torch.device("cpu"))
    assert torch.equal(first.norm.running_var, second.norm.running_var)


def test_a_run_with_precise_bn_writes_the_recomputed_statistics_and_notes_them(tmp_path, capsys):
    plain = Trainer(config(tmp_path / "plain"), distill=False)
    plain.run()
    precise = Trainer(config(tmp_path / "precise", precise_bn=3), distill=False)
    precise.run()
    trained = [m for m in plain.student.modules() if isinstance(m, nn.BatchNorm2d)]
    recomputed = [m for m in precise.student.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(trained, recomputed, strict=True))  # same training
    assert not any(torch.equal(a.running_mean, b.running_mean) for a, b in zip(trained, recomputed, strict=True))
    written = [m for m in load_model(tmp_path / "precise" / "model").modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a.running_var, b.running_var) for a, b in zip(recomputed, written, strict=True))
    assert "precise_bn: BatchNorm statistics recomputed over 3 batches of 2 uncropped training pairs" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precise_bn": -1}, "precise_bn must be at least 0"),
        ({"precise_bn": 2, "freeze_bn": True}, "precise_bn recomputes the BatchNorm statistics that freeze_bn keeps"),
    ],
)
def test_precise_bn_settings_that_cannot_work_are_refused(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **changes)


def test_the_uncropped_pairs_are_the_training_sets_own(tmp_path):
    data = {**TINY["data"], "crop": [16, 32]}
    trainer = Trainer(config(tmp_path, precise_bn=1, data=data), distill=False)
    assert trainer.train_set[0]["left"].shape[-2:] == (32, 64)


def test_a_network_without_batchnorm_statistics_reads_nothing_and_is_left_as_it_was():
    class NoNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.norm = nn.BatchNorm2d(3, track_running_stats=False)  # normalises by each batch alone

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return self.norm(self.conv(left))

    model = NoNorm().train()
    assert recompute_batchnorm(model, pairs([(8, 12)] * 2), batches=2, batch_size=1, seed=0, device="cpu") == 0
    assert model.training  # nothing ran: the trainer notes it and keeps the run as it is
