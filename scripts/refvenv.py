"""The reference virtualenv shared by the scripts in this folder: PyTorch, transformers,
PEFT, gguf and friends, installed from PyPI into ${SLD_REF_VENV:-/tmp/sld-ref-venv} on first
use. Never a test dependency: the fixtures these scripts write are committed."""
import importlib.util
import os
import subprocess
import sys

# Import names checked; pip names installed. accelerate is required by transformers to
# load GGUF files; peft is the LoRA reference (and the PyTorch benchmark's LoRA).
REQUIRED_MODULES = ["torch", "transformers", "safetensors", "numpy", "gguf", "accelerate", "peft"]
PIP_PACKAGES = ["torch", "transformers", "safetensors", "numpy", "gguf", "accelerate", "peft"]


def _has_modules(python=None):
    if python is None:
        return all(importlib.util.find_spec(m) is not None for m in REQUIRED_MODULES)
    code = "import " + ", ".join(REQUIRED_MODULES)
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def ensure(script):
    """Re-exec `script` under the reference venv unless the packages are already here."""
    if _has_modules():
        return
    name = os.path.basename(script)
    if os.environ.get("SLD_REF_REEXECED") == "1":
        sys.exit(f"{name}: the reference venv still lacks " + ", ".join(REQUIRED_MODULES))
    venv = os.environ.get("SLD_REF_VENV", "/tmp/sld-ref-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"creating the reference virtualenv {venv}", file=sys.stderr)
        subprocess.check_call(["python3", "-m", "venv", venv])
    if not _has_modules(python):
        print(f"installing {' '.join(PIP_PACKAGES)} into {venv} (takes a few minutes)", file=sys.stderr)
        subprocess.check_call([python, "-m", "pip", "install", "--upgrade", "pip"], stdout=sys.stderr)
        subprocess.check_call([python, "-m", "pip", "install", *PIP_PACKAGES], stdout=sys.stderr)
    env = dict(os.environ, SLD_REF_REEXECED="1")
    os.execve(python, [python, os.path.abspath(script), *sys.argv[1:]], env)
