"""A real full disk: the run's output on a small tmpfs that fills while a checkpoint is
written. The earlier checkpoints stay intact, no partial file is left, the error says "no
space left" and where, and the run resumes exactly once there is room."""
from __future__ import annotations

import subprocess

from .common import DrillFailure, DrillSkipped, Trial, Workspace, checkpoints, partial_files

# Two checkpoints of this run (~4.8 MB each) fit; the third does not.
SIZE = "11m"


def drill_disk(ws: Workspace) -> list[Trial]:
    output = ws.folder("disk-full")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(output)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        raise DrillSkipped(f"cannot mount a {SIZE} tmpfs here (needs root or CAP_SYS_ADMIN): {mount.stderr.strip()}")
    try:
        log = output.parent / (output.name + ".log")
        status = ws.run(output, log, "--keep", "4")
        text = log.read_text(errors="replace")
        saved = checkpoints(output)
        if status == 0:
            raise DrillFailure(f"the run on a {SIZE} filesystem did not fail:\n{text[-1500:]}")
        error = next((line for line in text.splitlines() if "no space left" in line.lower()), None)
        if error is None or "checkpoints/step-" not in error:
            raise DrillFailure(f"no 'no space left' error naming the checkpoint:\n{text[-1500:]}")
        if partial_files(output):
            raise DrillFailure(f"partial files left on the full disk: {partial_files(output)}")
        if not saved:
            raise DrillFailure(f"no checkpoint before the disk filled:\n{text[-1500:]}")
        for checkpoint in saved:
            ok, verdict = ws.verify(checkpoint)
            if not ok:
                raise DrillFailure(f"{checkpoint.name} does not verify after the disk filled: {verdict}")
        trial = Trial("disk-full", f"output on a {SIZE} tmpfs, full at the checkpoint after step {saved[-1].name[5:13].lstrip('0')}")
        trial.notes.append(error.strip()[:200])
        subprocess.run(["mount", "-o", "remount,size=64m", str(output)], check=True)
        step = ws.resume(output, trial, "--keep", "4")
        print(f"  {trial.detail}: exit {status}, \"{error.strip()[:160]}\"; {len(saved)} earlier checkpoint(s) "
              f"verify, none partial; with room, resumed from step {step}: "
              f"{'equal bit for bit' if trial.exact else 'DIFFERENT'}", flush=True)
        if not trial.exact:
            raise DrillFailure("the run resumed after the full disk differs from the uninterrupted run")
        return [trial]
    finally:
        subprocess.run(["umount", "-l", str(output)], capture_output=True)
