# Shared settings of the multi-host simulation; sourced, not run.
# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this
#
# Host i (1..K) is the network namespace sld-h<i> with hostname sld-h<i> (a UTS namespace
# that netns-rsh makes per launch), address 10.77.0.<10+i>/24 on its eth0, the far end of a
# veth pair whose near end sld-h<i>-v is a port of the bridge sld-br0 in the root namespace.
# The bridge has 10.77.0.254/24: mpirun (in the root namespace) talks to the daemons over it.

SIM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIM_PREFIX="sld-h"
SIM_BRIDGE="sld-br0"
SIM_NET="10.77.0"
SIM_CIDR="$SIM_NET.0/24"
SIM_BRIDGE_IP="$SIM_NET.254"
SIM_MAX_HOSTS=8
SIM_STATE="/run/sld-sim"          # hostfile and the list of hosts that are up

# Open MPI refuses to run as root unless told that it is meant.
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

sim_die() { printf 'error: %s\n' "$*" >&2; exit 1; }
sim_ns() { printf '%s%s' "$SIM_PREFIX" "$1"; }          # host number -> namespace name
sim_ip() { printf '%s.%s' "$SIM_NET" "$((10 + $1))"; }  # host number -> address
sim_veth() { printf '%s%s-v' "$SIM_PREFIX" "$1"; }      # host number -> root-side veth

# Host number of an address or a name (10.77.0.12 or sld-h2 -> 2); empty when neither.
sim_host_number() {
  case "$1" in
    "$SIM_NET".*) local o=${1##*.}; [[ "$o" =~ ^[0-9]+$ ]] && [ "$o" -gt 10 ] && printf '%s' "$((o - 10))" ;;
    "$SIM_PREFIX"*) local n=${1#"$SIM_PREFIX"}; [[ "$n" =~ ^[0-9]+$ ]] && printf '%s' "$n" ;;
  esac
  return 0
}
