import json
import os
import signal
import time

import pytest
import torch

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.errors import StereoDistillError
from stereodistill.evaluate.benchmark import benchmark, spread
from stereodistill.models import build_model


def test_benchmark_in_process_reports_every_field_and_speedups(tmp_path):
    ckpt = save_model(tmp_path / "student", build_model("dsnet-noatt", max_disp=16))
    rows = benchmark(["dsnet", str(ckpt)], 32, 64, repeats=2, warmup=1, max_disp=16, threads=1, isolate=False)
    assert [r["arch"] for r in rows] == ["dsnet", "dsnet-noatt"]
    assert rows[0]["speedup"] == 1.0
    for row in rows:
        assert row["latency_ms"] > 0 and row["params"] > 0 and row["gmacs"] > 0
        assert row["latency_min_ms"] <= row["latency_ms"]
        assert row["speedup"] == pytest.approx(rows[0]["latency_ms"] / row["latency_ms"])


def test_benchmark_in_process_leaves_the_callers_thread_count_as_it_was():
    # A thread count left behind changes the rounding of everything the caller runs next.
    before = torch.get_num_threads()
    benchmark(["dsnet-noatt"], 32, 64, repeats=1, warmup=0, max_disp=16, threads=before + 1, isolate=False)
    assert torch.get_num_threads() == before
    with pytest.raises(StereoDistillError):
        benchmark(["nosuchnet"], 32, 64, threads=before + 1, isolate=False)
    assert torch.get_num_threads() == before


def test_peak_memory_is_read_around_the_forwards_before_the_summary_copies_the_weights(monkeypatch):
    import resource

    import stereodistill.models.summary as summary_module

    order: list[str] = []
    real_usage, real_summary = resource.getrusage, summary_module.summarize
    monkeypatch.setattr(resource, "getrusage", lambda who: order.append("rss") or real_usage(who))
    monkeypatch.setattr(summary_module, "summarize", lambda *a, **k: order.append("summary") or real_summary(*a, **k))
    benchmark(["dsnet-noatt"], 32, 64, repeats=1, warmup=0, max_disp=16, threads=1, isolate=False)
    assert order == ["rss", "rss", "summary"]  # its deep copies would raise the peak the forwards are measured by


def test_bench_command_runs_each_model_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "--models",
                "dsnet-noatt,dsnet",
                "--size",
                "32x64",
                "--max-disp",
                "16",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert "[1/2] dsnet-noatt" in captured.err and "[2/2] dsnet" in captured.err  # progress per network
    assert "min ms" in printed and "median ms" in printed and "max ms" in printed
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["dsnet-noatt", "dsnet"] and results[0]["peak_memory_mb"] >= 0
    assert [r["max_disp"] for r in results] == [16, 16]
    assert all(r["latency_min_ms"] <= r["latency_ms"] <= r["latency_max_ms"] for r in results)
    ratio = results[0]["latency_ms"] / results[1]["latency_ms"]
    direction = f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
    assert f"against dsnet-noatt: dsnet {direction}" in printed


def test_the_summary_says_faster_or_slower_with_a_factor_of_at_least_one():
    from stereodistill.cli.bench_cmd import relative_speed

    psmnet, lean = {"name": "psmnet", "latency_ms": 3000.0}, {"name": "lean", "latency_ms": 120.0}
    assert relative_speed(lean, psmnet) == "lean 25.00× faster"
    assert relative_speed(psmnet, lean) == "psmnet 25.00× slower"


def test_unknown_model_name_is_a_clear_error(capsys):
    with pytest.raises(StereoDistillError, match="neither an architecture"):
        benchmark(["nosuchnet"], 32, 64, isolate=False)
    assert main(["bench", "--models", "nosuchnet", "--size", "32x64"]) == 2
    err = capsys.readouterr().err
    assert "nosuchnet" in err and "ConfigError" not in err  # our errors speak for themselves


def test_a_child_that_dies_without_a_result_is_an_error_not_a_hang():
    import multiprocessing as mp

    from stereodistill.evaluate.benchmark import _result

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=os._exit, args=(3,))  # dies at once, reports nothing
    process.start()
    status, message = _result(queue, process)
    process.join()
    assert status == "error" and "exit code 3" in message
    process = ctx.Process(target=time.sleep, args=(60,))
    process.start()
    os.kill(process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer ends a process
    status, message = _result(queue, process)
    process.join()
    assert message == "the benchmark process died without a result (killed by SIGKILL, most likely for lack of memory)"


def test_bench_runs_on_the_default_device_and_threads_and_warns_when_busy(capsys, monkeypatch):

    def fake(names, *args, **kwargs):  # a network whose forwards took 10, 20 and 40 ms
        return [
            {
                "name": "x",
                "max_disp": 192,
                "params": 1,
                "gmacs": 0.1,
                "latency_min_ms": 10.0,
                "latency_ms": 20.0,
                "latency_max_ms": 40.0,
                "peak_memory_mb": 1.0,
                "speedup": 1.0,
            }
        ]

    monkeypatch.setattr("stereodistill.evaluate.benchmark.benchmark", fake)
    assert main(["bench", "--models", "x"]) == 0  # --device auto, threads: this process's cores
    captured = capsys.readouterr()
    assert "CPU, " in captured.out and "warning: the latencies of x vary by more than 25%" in captured.err
    assert "--threads" not in captured.err and "ranges" not in captured.err
    assert spread(fake([])[0]) == 1.5


def test_bench_names_rows_of_different_ranges_and_more_threads_than_cpus(capsys, monkeypatch):
    from stereodistill.runtime import process_cpus

    def fake(names, *args, **kwargs):
        row = {"params": 1, "gmacs": 0.1, "latency_min_ms": 10.0, "latency_ms": 10.0, "latency_max_ms": 10.0}
        return [
            {**row, "name": n, "max_disp": d, "peak_memory_mb": 1.0, "speedup": 1.0}
            for n, d in zip(names, (192, 32), strict=True)
        ]

    monkeypatch.setattr("stereodistill.evaluate.benchmark.benchmark", fake)
    many = str(process_cpus() + 1)
    assert main(["bench", "--models", "lean,runs/x/model", "--device", "cpu", "--threads", many]) == 0
    captured = capsys.readouterr()
    assert f"warning: --threads {many} is more than the {process_cpus()} CPUs this process may use" in captured.err
    assert "note: the networks search different disparity ranges (lean 192, runs/x/model 32 px)" in captured.err
    assert "max disp" in captured.out.splitlines()[1]


def test_a_bad_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--models", "dsnet", "--device", "gpu"])
    assert info.value.code == 2 and "expected auto, cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err
