"""What every drill shares: the run it interrupts, starting and killing it, and the checks.

A drill trains the default model for a few updates on 2 ranks through launch/run, breaks
the run in one way, and checks what a user needs: the job stops (with the cause named),
the newest checkpoint verifies, nothing partial is left, and the resumed run ends with an
adapter byte-for-byte equal to the uninterrupted run's.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "run"
STEPS = 8


class DrillFailure(Exception):
    """A check failed; the message says which and shows the evidence."""


class DrillSkipped(Exception):
    """This machine cannot run the drill (no root, no network namespaces); says why."""


@dataclass
class Trial:
    """One trial's record for the figures table."""
    drill: str
    detail: str
    detected: bool = True
    exact: bool | None = None
    lost: int = 0
    detect_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


class Workspace:
    """A temporary folder with the data, and the reference (uninterrupted) adapter."""

    def __init__(self, binary: Path, model: Path, root: Path):
        self.binary, self.model, self.root = binary, model, root
        self.data = root / "data" / "train.jsonl"
        if not self.data.exists():
            subprocess.run(["python3", str(ROOT / "examples" / "make_arithmetic.py"), str(root / "data")],
                           check=True, stdout=subprocess.DEVNULL)
        self.reference: Path | None = None
        self.step_seconds = 2.0
        self.counter = 0

    def folder(self, name: str) -> Path:
        self.counter += 1
        path = self.root / f"{self.counter:02d}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def train_args(self, output: Path, *extra: str, steps: int = STEPS, data: Path | None = None) -> list[str]:
        return ["train", "--model", str(self.model), "--data", str(data or self.data), "--output", str(output),
                "--steps", str(steps), "--batch-size", "4", "--micro-batch", "1", "--max-seq-len", "32",
                "--seed", "5", "--threads", "1", "--json", "--checkpoint-every", "2", "--keep", "2", *extra]

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SWIFT_LORA_DIST_BIN=str(self.binary), OPENBLAS_NUM_THREADS="1")
        env.update(extra)
        return env

    def start(self, output: Path, log: Path, *extra: str, launch: tuple[str, ...] = ("-n", "2"),
              launcher: list[str] | None = None, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        """launch/run LAUNCH -- train … in its own process group, output to `log`."""
        command = (launcher or [str(LAUNCH)]) + [*launch, "--", *self.train_args(output, *extra, **kw)]
        with open(log, "ab") as sink:
            return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env or self.env(),
                                    start_new_session=True)

    def run(self, output: Path, log: Path, *extra: str, timeout: float = 600, **kw) -> int:
        process = self.start(output, log, *extra, **kw)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise DrillFailure(f"the run did not end within {timeout:.0f} s; log {log}:\n{tail(log)}")

    def make_reference(self) -> None:
        """The uninterrupted 2-rank run every resumed run must equal."""
        output = self.folder("reference")
        started = time.monotonic()
        status = self.run(output, output / "log")
        if status != 0:
            raise DrillFailure(f"the reference run failed ({status}):\n{tail(output / 'log')}")
        self.reference = output / "adapter_model.safetensors"
        steps = [e for e in events(output / "metrics.jsonl") if e.get("event") == "step"]
        self.step_seconds = sum(e.get("seconds", 0) for e in steps) / max(len(steps), 1)
        print(f"  reference: {STEPS} updates on 2 ranks in {time.monotonic() - started:.1f} s "
              f"({self.step_seconds:.2f} s per update)", flush=True)

    def equal_to_reference(self, output: Path) -> bool:
        adapter = output / "adapter_model.safetensors"
        return adapter.exists() and self.reference is not None and filecmp.cmp(adapter, self.reference, shallow=False)

    def verify(self, checkpoint: Path) -> tuple[bool, str]:
        result = subprocess.run([str(self.binary), "inspect", str(checkpoint), "--verify"], capture_output=True,
                                text=True, env=self.env())
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def resume(self, output: Path, trial: Trial, *extra: str, **kw) -> int | None:
        """Resumes `output` on 2 ranks to the end; records exactness; the step resumed from."""
        log = output / "resume.log"
        status = self.run(output, log, "--resume", "auto", *extra, **kw)
        if status != 0:
            raise DrillFailure(f"the resumed run failed ({status}):\n{tail(log)}")
        trial.exact = self.equal_to_reference(output)
        partial = partial_files(output)
        if partial:
            raise DrillFailure(f"temporary files left after the resumed run: {partial}")
        match = re.search(r"resuming from \S*step-0*(\d+)\.sldckpt", log.read_text(errors="replace").replace("\\/", "/"))
        return int(match.group(1)) if match else None


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def checkpoints(output: Path) -> list[Path]:
    return sorted((output / "checkpoints").glob("step-*.sldckpt"))


def partial_files(output: Path) -> list[str]:
    return sorted(p.name for p in (output / "checkpoints").glob(".*partial*")) if (output / "checkpoints").exists() else []


def wait_for(predicate, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def training_started(output: Path) -> bool:
    return any(e.get("event") == "step" for e in events(output / "metrics.jsonl"))


def rank_pids(output: Path) -> dict[int, int]:
    """Rank number → PID of this run's rank processes (from their OMPI_COMM_WORLD_RANK)."""
    found = subprocess.run(["pgrep", "-f", f"swift-lora-dist train .*--output {output} "], capture_output=True,
                           text=True).stdout.split()
    ranks = {}
    for pid in map(int, found):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"OMPI_COMM_WORLD_RANK="):
                ranks[int(entry.split(b"=", 1)[1])] = pid
    return ranks


def wait_exit(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None
