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
    for junk in ("0", "", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert available_cpus() == cpus


def test_a_child_process_end_is_told_in_words():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL, most likely for lack of memory"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"


def test_reports_name_the_cpu_model_where_the_system_says_it():
    from pathlib import Path

    from stereodistill.runtime import cpu_model, machine_info

    if not Path("/proc/cpuinfo").is_file():
        return
    lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if names:
        assert cpu_model() == " ".join(names[0].split()) == machine_info()["processor"]
