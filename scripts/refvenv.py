"""The reference virtualenv shared by the scripts in this folder: PyTorch, transformers,
PEFT, gguf and friends, installed from PyPI into ${SLD_REF_VENV:-/tmp/sld-ref-venv} on first
use. Never a test dependency: the fixtures these scripts write are committed.

`ensure_venv` does the same for a script that needs other packages in a venv of its own
(e.g. make_spm_tokenizer_fixtures.py: sentencepiece and tokenizers, no PyTorch)."""
import importlib.util
import os
import subprocess
import sys

# Import names checked; pip names installed. accelerate is required by transformers to
# load GGUF files; peft is the LoRA reference (and the PyTorch benchmark's LoRA).
REQUIRED_MODULES = ["torch", "transformers", "safetensors", "numpy", "gguf", "accelerate", "peft"]
PIP_PACKAGES = ["torch", "transformers", "safetensors", "numpy", "gguf", "accelerate", "peft"]


def _has_modules(modules, python=None):
    if python is None:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    code = "import " + ", ".join(modules)
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def ensure(script):
    """Re-exec `script` under the reference venv unless the packages are already here."""
    ensure_venv(script, "SLD_REF_VENV", "/tmp/sld-ref-venv", REQUIRED_MODULES, PIP_PACKAGES)


def ensure_venv(script, env_name, default_venv, modules, packages):
    """Re-exec `script` under the venv named by ${env_name} (default `default_venv`) unless
    `modules` are importable here; creates the venv and pip-installs `packages` when needed."""
    if _has_modules(modules):
        return
    name = os.path.basename(script)
    if os.environ.get("SLD_REF_REEXECED") == "1":
        sys.exit(f"{name}: the venv still lacks " + ", ".join(modules))
    venv = os.environ.get(env_name, default_venv)
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"creating the virtualenv {venv}", file=sys.stderr)
        subprocess.check_call(["python3", "-m", "venv", venv])
    if not _has_modules(modules, python):
        print(f"installing {' '.join(packages)} into {venv} (takes a few minutes)", file=sys.stderr)
        subprocess.check_call([python, "-m", "pip", "install", "--upgrade", "pip"], stdout=sys.stderr)
        subprocess.check_call([python, "-m", "pip", "install", *packages], stdout=sys.stderr)
    env = dict(os.environ, SLD_REF_REEXECED="1")
    os.execve(python, [python, os.path.abspath(script), *sys.argv[1:]], env)
