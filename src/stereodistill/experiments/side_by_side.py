"""Training several runs at once, one spawned process each, the CPU's threads split between them.

Why: the quickstart's small networks gain little from a second CPU thread. On the 2-core machine of
docs/benchmarks.md, a ``lean`` student's training step is about 1.35x faster on two threads than on one
beside another run, so two students trained side by side, one thread each, get about 1.45x the steps
per second of the two trained in turn (``benchmarks/bench_side_by_side.py``). Each run is
an ordinary :class:`~stereodistill.train.trainer.Trainer` run in its own folder, seeded as it would
be alone; its progress lines carry its name, as the runs share the terminal.

A run that fails stops the others and raises :class:`SideBySideError` with its message; Ctrl-C
stops them all (each child also stops on its own when its parent is gone).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stereodistill.errors import StereoDistillError
from stereodistill.runtime import describe_exit, exit_with_parent
from stereodistill.train.config import RunConfig


class SideBySideError(StereoDistillError, RuntimeError):
    """One of the runs trained side by side failed (its own message, named by the run)."""


@dataclass
class Job:
    """One run: its config, and whether it distils (a ``distill`` run rather than ``train``)."""

    config: RunConfig
    distill: bool


def _train_child(parent: int, job: Job, threads: int, label: str, conn: Any) -> None:
    """Child process: train ``job`` with ``threads`` threads; send back ``("ok", result, seconds)``, or
    ``("error", message)`` for a failure the user can act on, ``("crash", traceback)`` otherwise."""
    exit_with_parent(parent, says=f"{label}: the process that started it is gone")
    import torch

    from stereodistill.runtime import configure_cpu_math

    configure_cpu_math()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        from stereodistill.train.trainer import Trainer

        result = Trainer(job.config, distill=job.distill, label=label).run()
        conn.send(("ok", result, round(time.perf_counter() - started, 1)))
    except KeyboardInterrupt:
        conn.send(("error", "interrupted"))
    except StereoDistillError as exc:
        conn.send(("error", str(exc)))
    except BaseException:  # reported by the parent, with the child's traceback
        conn.send(("crash", traceback.format_exc()[-4000:]))
    finally:
        conn.close()


def train_side_by_side(
    jobs: Mapping[str, Job], threads: int, *, poll_s: float = 0.2, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Train every job at once, each in a spawned process with ``threads`` threads; return, by name,
    ``{"result": what Trainer.run returned, "seconds": its wall time}``."""
    ctx = mp.get_context("spawn")
    running: dict[str, tuple[Any, Any]] = {}
    done: dict[str, dict[str, Any]] = {}
    try:
        for name, job in jobs.items():
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_train_child, args=(os.getpid(), job, threads, name, send), daemon=True)
            process.start()
            send.close()  # the child holds the only writing end: a dead child reads as end of file
            running[name] = (process, receive)
        while running:
            for name, (process, receive) in list(running.items()):
                if not receive.poll(0):  # nothing yet: a dead child's closed pipe would read as end of file
                    continue
                try:
                    message = receive.recv()
                except EOFError:
                    message = None
                process.join()
                if message is None:
                    raise SideBySideError(f"{name}: its process died ({describe_exit(process.exitcode)})")
                del running[name]
                if message[0] == "ok":
                    done[name] = {"result": message[1], "seconds": message[2]}
                    log(f"      {name} finished in {message[2]:.0f} s")
                elif message[0] == "error":
                    raise SideBySideError(f"{name}: {message[1]}")
                else:
                    raise SideBySideError(f"{name} failed:\n{message[1]}")
            time.sleep(poll_s)
    finally:
        for process, receive in running.values():
            if process.is_alive():
                process.terminate()
            process.join()
            receive.close()
    return done
