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


def test_progress_in_a_log_file_is_the_first_step_then_one_line_per_tenth(tmp_path, capsys):
    logger = run_logging.RunLogger(tmp_path, total_steps=25)
    logger.tty = False  # as under `make quickstart > log`
    for step in range(1, 26):
        logger.scalars(step, {"total": 1.0 / step, "lr": 1e-3}, rate=5.0, stage="main", every=5)
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    expected = [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25]
    assert [line.split()[1] for line in lines] == [f"{s}/25" for s in expected]
    assert all("\r" not in line and "ETA" in line for line in lines)
    rows = (tmp_path / "scalars.csv").read_text().splitlines()
    assert rows[0] == "step,stage,name,value" and len(rows) == 1 + 5 * 2  # every 5th step, two scalars


def test_a_labelled_run_writes_whole_lines_that_name_it(tmp_path, capsys):
    logger = run_logging.RunLogger(tmp_path, total_steps=2, label="student_scratch")
    assert not logger.tty  # runs side by side share a terminal: no line is redrawn in place
    for step in (1, 2):
        logger.scalars(step, {"total": 1.0, "lr": 1e-3}, rate=1.0, stage="main")
    logger.note("step 2: validating")
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [line for line in lines if line.lstrip().startswith("[student_scratch] ")] and len(lines) == 3
