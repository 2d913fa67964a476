"""Damaged state on resume: the newest checkpoint corrupted or truncated (skipped, named, the
previous one used, the result still exact), every checkpoint damaged (refused, named), and
the data file gone (refused, named, checkpoints untouched)."""
from __future__ import annotations

import hashlib
import os
import signal

from .common import DrillFailure, Trial, Workspace, checkpoints, rank_pids, tail, wait_for


def interrupted_run(ws: Workspace, name: str):
    """A run killed (every process, at once) once it holds 2 checkpoints."""
    output = ws.folder(name)
    process = ws.start(output, output / "log")
    if not wait_for(lambda: len(checkpoints(output)) >= 2 or process.poll() is not None, 240):
        raise DrillFailure(f"{name}: no second checkpoint:\n{tail(output / 'log')}")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pid in rank_pids(output).values():
        os.kill(pid, signal.SIGKILL)
    return output


def digest(paths) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def drill_corrupt(ws: Workspace) -> list[Trial]:
    done = []
    for damage in ("flipped", "truncated"):
        output = interrupted_run(ws, f"corrupt-{damage}")
        saved = checkpoints(output)
        newest = saved[-1]
        data = bytearray(newest.read_bytes())
        if damage == "flipped":
            data[len(data) // 2] ^= 0x40
        else:
            del data[len(data) * 2 // 3:]
        newest.write_bytes(bytes(data))
        trial = Trial("corrupt", f"newest checkpoint {newest.name} {damage}")
        step = ws.resume(output, trial)
        log = (output / "resume.log").read_text(errors="replace").replace("\\/", "/")
        if newest.name not in log or step is None or step >= int(newest.name[5:13]):
            raise DrillFailure(f"{damage}: expected {newest.name} named as skipped and an older one used "
                               f"(resumed from {step}):\n{log[-1500:]}")
        skipped = next((line for line in log.splitlines() if newest.name in line), "")
        trial.notes.append(f"skipped, resumed from step {step}")
        print(f"  {trial.detail}: named and skipped, resumed from step {step}: "
              f"{'equal bit for bit' if trial.exact else 'DIFFERENT'}\n    {skipped.strip()[:220]}", flush=True)
        if not trial.exact:
            raise DrillFailure(f"{damage}: the resumed adapter differs from the uninterrupted run's")
        done.append(trial)

    # Every checkpoint damaged: refused, naming the folder, nothing else written.
    output = interrupted_run(ws, "corrupt-all")
    for checkpoint in checkpoints(output):
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    before = digest(checkpoints(output))
    status = ws.run(output, output / "resume.log", "--resume", "auto")
    log = (output / "resume.log").read_text(errors="replace")
    if status == 0 or "valid" not in log or digest(checkpoints(output)) != before:
        raise DrillFailure(f"every checkpoint damaged: expected a refusal with checkpoints untouched "
                           f"(status {status}):\n{log[-1500:]}")
    line = next((l for l in log.splitlines() if "valid" in l), "")
    print(f"  every checkpoint damaged: refused (exit {status}), checkpoints untouched\n    {line.strip()[:220]}",
          flush=True)
    done.append(Trial("corrupt", "every checkpoint damaged: refused"))

    # The data file gone on resume: refused, naming it; checkpoints untouched.
    output = interrupted_run(ws, "missing-data")
    before = digest(checkpoints(output))
    missing = ws.root / "moved-away.jsonl"
    status = ws.run(output, output / "resume.log", "--resume", "auto", data=missing)
    log = (output / "resume.log").read_text(errors="replace")
    if status == 0 or str(missing) not in log.replace("\\/", "/") or digest(checkpoints(output)) != before:
        raise DrillFailure(f"missing data: expected a refusal naming {missing} (status {status}):\n{log[-1500:]}")
    line = next((l for l in log.splitlines() if "moved-away" in l), "")
    print(f"  data file missing on resume: refused (exit {status}), checkpoints untouched\n    {line.strip()[:220]}",
          flush=True)
    done.append(Trial("corrupt", "data file missing on resume: refused"))
    return done
