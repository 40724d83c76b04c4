from stereodistill.train.logging import RunLogger


def test_progress_in_a_log_file_is_one_line_per_tenth(tmp_path, capsys):
    logger = RunLogger(tmp_path, total_steps=25)
    logger.tty = False  # as under `make quickstart > log`
    for step in range(1, 26):
        logger.scalars(step, {"total": 1.0 / step, "lr": 1e-3}, rate=5.0, stage="main", every=5)
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == [f"{s}/25" for s in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25)]
    assert all("\r" not in line and "ETA" in line for line in lines)
    rows = (tmp_path / "scalars.csv").read_text().splitlines()
    assert rows[0] == "step,stage,name,value" and len(rows) == 1 + 5 * 2  # every 5th step, two scalars
