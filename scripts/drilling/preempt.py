"""Preemption: SIGTERM to the job (as a batch system sends it) or SIGUSR2 to every rank (as
`scancel -s USR2` does) at seeded moments: the update ends, a checkpoint is written, the
job exits 143, and the resumed run equals the uninterrupted one."""
from __future__ import annotations

import os
import random
import signal
import time

from .common import DrillFailure, Trial, Workspace, checkpoints, events, rank_pids, tail, training_started, \
    wait_exit, wait_for


def drill_preempt(ws: Workspace, trials: int, seed: int) -> list[Trial]:
    done = []
    for index in range(trials):
        rng = random.Random(seed * 7 + index)
        term = index % 2 == 0
        output = ws.folder(f"preempt-{index}")
        process = ws.start(output, output / "log")
        if not wait_for(lambda: training_started(output) or process.poll() is not None, 240):
            raise DrillFailure(f"preempt {index}: training did not start:\n{tail(output / 'log')}")
        delay = rng.uniform(0, 0.8 * ws.step_seconds * 6)
        time.sleep(delay)
        if process.poll() is not None:
            raise DrillFailure(f"preempt {index}: the run ended before the signal:\n{tail(output / 'log')}")
        if term:
            os.kill(process.pid, signal.SIGTERM)            # launch/run, as sbatch's shell or a user
            what = "SIGTERM to launch/run"
        else:
            for pid in rank_pids(output).values():
                os.kill(pid, signal.SIGUSR2)
            what = "SIGUSR2 to every rank"
        sent = time.monotonic()
        status = wait_exit(process, 120)
        trial = Trial("preempt", f"{what} {delay:.1f} s after the first update")
        trial.detect_seconds = time.monotonic() - sent
        log = (output / "log").read_text(errors="replace")
        if status != 143:
            raise DrillFailure(f"preempt {index}: expected exit status 143, got {status}:\n{log[-1500:]}")
        stopped = [e for e in events(output / "log") if e.get("event") == "stopped"]
        saved = checkpoints(output)
        if not stopped or not saved:
            raise DrillFailure(f"preempt {index}: no 'stopped' event or no checkpoint:\n{log[-1500:]}")
        ok, text = ws.verify(saved[-1])
        if not ok:
            raise DrillFailure(f"preempt {index}: {saved[-1].name} does not verify: {text}")
        step = ws.resume(output, trial)
        trial.notes.append(f"checkpoint at step {step}")
        print(f"  trial {index + 1}/{trials}: {trial.detail}: exit 143 in {trial.detect_seconds:.1f} s, "
              f"resumed from step {step}, {'equal bit for bit' if trial.exact else 'DIFFERENT'}", flush=True)
        if not trial.exact:
            raise DrillFailure(f"preempt {index}: the resumed adapter differs from the uninterrupted run's")
        done.append(trial)
    return done
