"""Process-wide facts: how many threads a command may use, and how a child process ended."""

import os
import signal

from stereodistill.runtime import available_cpus, describe_exit


def test_omp_num_threads_caps_the_threads_a_command_takes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = available_cpus()
    assert cpus == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cpus() == 1  # ablate's cells and bench's children took every core before
    monkeypatch.setenv("OMP_NUM_THREADS", str(cpus + 8))
    assert available_cpus() == cpus  # never more than the process may run on
    for junk in ("0", "", "two", "²"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert available_cpus() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "1,2")  # OpenMP's nested list: the outer level counts
    assert available_cpus() == 1


def test_a_child_process_end_is_told_in_words():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL, most likely for lack of memory"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"


def test_reports_name_the_cpu_model_where_the_system_says_it(tmp_path):
    from stereodistill.runtime import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 7B13 64-Core\n")
    assert cpu_model(str(info)) == "AMD EPYC 7B13 64-Core"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # some ARM kernels name no model
    assert cpu_model(str(info)) is None
    assert cpu_model(str(tmp_path / "absent")) is None


def test_cpu_math_puts_numpy_blas_on_one_thread_and_leaves_pytorch_threads_alone(monkeypatch):
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from stereodistill.runtime import configure_cpu_math

    monkeypatch.setattr(torch, "set_flush_denormal", lambda _on: True)  # no getter to restore it with
    threads = torch.get_num_threads()
    with threadpool_limits(2, user_api="blas"):  # restored after the test
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {2}
        configure_cpu_math(limit_blas=False)  # the benchmark's "as before"
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {2}
        configure_cpu_math()
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}
        assert torch.get_num_threads() == threads
