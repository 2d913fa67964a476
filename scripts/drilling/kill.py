"""`kill -9` of one rank at seeded moments, some while a checkpoint is half written; and the
supervisor (`launch/run --restarts`) bringing a run through two such kills by itself."""
from __future__ import annotations

import os
import random
import signal
import time

from .common import (DrillFailure, Trial, Workspace, checkpoints, partial_files, rank_pids, tail,
                     training_started, wait_exit, wait_for)

# The longest a job may take to stop after a rank is killed (launch/run's --stop-timeout
# below, plus mpirun's own ending).
STOP_BOUND = 30.0
PAUSE = "1.5"  # seconds a checkpoint write pauses halfway in the in-write trials


def kill_trial(ws: Workspace, index: int, seed: int) -> Trial:
    rng = random.Random(seed * 1000 + index)
    in_write = index % 4 == 3
    victim = rng.choice([0, 1])
    output = ws.folder(f"kill-{index}")
    env = ws.env(SWIFT_LORA_DIST_DRILL_WRITE_PAUSE=PAUSE) if in_write else ws.env()
    process = ws.start(output, output / "log", launch=("-n", "2"), env=env)
    if not wait_for(lambda: training_started(output) or process.poll() is not None, 240):
        raise DrillFailure(f"trial {index}: training did not start:\n{tail(output / 'log')}")
    if in_write:
        # The rank is killed while rank 0 has half of a checkpoint in its temporary file.
        wait_for(lambda: bool(partial_files(output)) or process.poll() is not None, 120, poll=0.01)
        moment = "during the write of a checkpoint"
    else:
        delay = rng.uniform(0, 0.9 * ws.step_seconds * 7)
        time.sleep(delay)
        moment = f"{delay:.1f} s after the first update"
    if process.poll() is not None:
        raise DrillFailure(f"trial {index}: the run ended before the kill ({moment}); log:\n{tail(output / 'log')}")
    pids = rank_pids(output)
    if victim not in pids:
        raise DrillFailure(f"trial {index}: rank {victim} not found among {pids}")
    writing = partial_files(output)
    os.kill(pids[victim], signal.SIGKILL)
    killed = time.monotonic()
    status = wait_exit(process, STOP_BOUND * 4)
    trial = Trial("kill", f"rank {victim} {moment}")
    trial.detect_seconds = time.monotonic() - killed
    log = (output / "log").read_text(errors="replace")
    if status is None or status == 0 or trial.detect_seconds > STOP_BOUND:
        raise DrillFailure(f"trial {index}: the job did not stop within {STOP_BOUND:.0f} s with an error "
                           f"(status {status}, {trial.detect_seconds:.1f} s):\n{log[-1500:]}")
    if f"process rank {victim}" not in log and f"error on rank {victim}" not in log:
        raise DrillFailure(f"trial {index}: the log does not name rank {victim}:\n{log[-1500:]}")
    if in_write and not writing:
        trial.notes.append("the write had ended before the kill")
    newest = checkpoints(output)
    finished = bool(writing) and any(writing[0].startswith(f".{c.name}.partial") for c in newest)
    if newest:
        ok, text = ws.verify(newest[-1])
        if not ok:
            raise DrillFailure(f"trial {index}: the newest checkpoint {newest[-1].name} does not verify: {text}")
    step = ws.resume(output, trial)
    trial.notes.append(f"resumed from step {step}" if step else "restarted from the beginning (no checkpoint yet)")
    if finished:
        trial.notes.append(f"{writing[0]} was half written; rank 0 finished it before the job ended, and it verifies")
    elif writing:
        trial.notes.append(f"{writing[0]} was half written; not taken, removed by the next save")
    return trial


def drill_kill(ws: Workspace, trials: int, seed: int) -> list[Trial]:
    done = []
    for index in range(trials):
        trial = kill_trial(ws, index, seed)
        done.append(trial)
        print(f"  trial {index + 1}/{trials}: {trial.detail}: stopped in {trial.detect_seconds:.1f} s, "
              f"{'; '.join(trial.notes)}, resumed run {'equal bit for bit' if trial.exact else 'DIFFERENT'}",
              flush=True)
        if not trial.exact:
            raise DrillFailure(f"trial {index}: the resumed adapter differs from the uninterrupted run's")
    return done


def drill_supervisor(ws: Workspace, seed: int) -> list[Trial]:
    """launch/run --restarts 3: two ranks killed in one run, the run still ends equal."""
    rng = random.Random(seed)
    output = ws.folder("supervisor")
    process = ws.start(output, output / "log", launch=("-n", "2", "--restarts", "3", "--backoff", "1",
                                                       ))
    trial = Trial("supervisor", "2 ranks killed in one supervised run")
    for kill in range(2):
        seen = len(checkpoints(output))
        # A kill after a new checkpoint, so that each restart has progress to keep.
        if not wait_for(lambda: len(checkpoints(output)) > seen or process.poll() is not None, 240):
            raise DrillFailure(f"supervisor: no new checkpoint before kill {kill + 1}:\n{tail(output / 'log')}")
        time.sleep(rng.uniform(0, ws.step_seconds))
        pids = rank_pids(output)
        if process.poll() is not None or not pids:
            raise DrillFailure(f"supervisor: the run ended before kill {kill + 1}:\n{tail(output / 'log')}")
        victim = rng.choice(sorted(pids))
        os.kill(pids[victim], signal.SIGKILL)
        trial.notes.append(f"rank {victim}")
        # Wait for the restart before the next kill.
        wait_for(lambda: (output / "restarts.log").exists()
                 and (output / "restarts.log").read_text().count("restart ") > kill or process.poll() is not None,
                 STOP_BOUND * 2)
    status = wait_exit(process, 600)
    restarts = (output / "restarts.log").read_text() if (output / "restarts.log").exists() else ""
    if status != 0:
        raise DrillFailure(f"supervisor: the supervised run failed ({status}):\n{tail(output / 'log')}")
    if restarts.count("restart ") != 2 or "exited on signal" not in restarts and "error on rank" not in restarts:
        raise DrillFailure(f"supervisor: expected 2 restarts with their causes in restarts.log:\n{restarts}")
    trial.exact = ws.equal_to_reference(output)
    print(f"  killed {', '.join(trial.notes)}; restarts.log:\n    " + restarts.strip().replace("\n", "\n    "),
          flush=True)
    if not trial.exact:
        raise DrillFailure("supervisor: the supervised run's adapter differs from the uninterrupted run's")
    return [trial]
