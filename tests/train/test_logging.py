"""Progress a person can follow in a log: the first step, every tenth, and never 30 s of silence."""

from stereodistill.train import logging as run_logging


def progress_lines(tmp_path, monkeypatch, capsys, seconds_per_step):
    clock = iter(range(0, 10_000, seconds_per_step))
    monkeypatch.setattr(run_logging.time, "monotonic", lambda: float(next(clock)))
    logger = run_logging.RunLogger(tmp_path, total_steps=100)
    logger.tty = False
    for step in range(1, 8):
        logger.scalars(step, {"total": 1.0, "lr": 1e-3}, rate=0.5, stage="main")
    logger.close()
    return [line for line in capsys.readouterr().err.splitlines() if "step " in line]


def test_a_slow_run_prints_at_least_every_30_seconds(tmp_path, monkeypatch, capsys):
    lines = progress_lines(tmp_path, monkeypatch, capsys, seconds_per_step=31)
    assert [line.split()[1] for line in lines] == [f"{step}/100" for step in range(1, 8)]
    assert "ETA 198 s" in lines[0]  # 99 steps left at 0.5 it/s


def test_a_fast_run_prints_the_first_step_then_every_tenth(tmp_path, monkeypatch, capsys):
    lines = progress_lines(tmp_path, monkeypatch, capsys, seconds_per_step=1)
    assert [line.split()[1] for line in lines] == ["1/100"]
