#!/usr/bin/env bash
# A simulated cluster on one machine: N "hosts" that are Linux network namespaces on a
# bridge, each with its own hostname, and `mpirun` across them through Open MPI's rsh
# launcher (TCP only), so multi-node launches, per-host local ranks and network failures
# can be tested without a cluster. Needs root, `ip netns` and `unshare` (util-linux).
#
#   scripts/sim_cluster.sh up N [PREFIX]        create PREFIX-h0 .. PREFIX-h(N-1) (N <= 64)
#   scripts/sim_cluster.sh down [PREFIX]        remove the cluster (idempotent; kills its processes)
#   scripts/sim_cluster.sh hostfile [SLOTS]     print a hostfile ("PREFIX-hI slots=SLOTS")
#   scripts/sim_cluster.sh run -- ARGS...       mpirun ARGS... across the hosts (see below)
#   scripts/sim_cluster.sh exec HOST CMD...     run CMD on HOST (as Open MPI would)
#   scripts/sim_cluster.sh link-down HOST       cut HOST's network link (its processes keep running)
#   scripts/sim_cluster.sh link-up HOST         restore it
#   scripts/sim_cluster.sh status               namespaces, addresses and link states
#
# PREFIX (default: $PENG_SIM_PREFIX, else "peng"; [a-z][a-z0-9]*, at most 20 characters)
# names everything, so clusters with distinct prefixes coexist (tests use one per process).
# Every subcommand also takes `-p PREFIX` before its name. HOST is PREFIX-hI, hI, I or the
# host's address. Slots per host: SLOTS, else $PENG_SIM_SLOTS, else 2.
#
# Topology (decided: the root namespace is NOT on the bridge):
#
#   root namespace       untouched: no interface, address or route is added there
#   PREFIX-head          holds the bridge br0 = 198.18.0.1/24; `run` starts mpirun here
#     br0 -- vI  <veth>  eth0 of PREFIX-hI = 198.18.0.(10+I)/24, hostname PREFIX-hI
#
# mpirun (the "head" node) runs in its own namespace PREFIX-head whose only interfaces are
# lo and the bridge, so (1) several clusters use the same 198.18.0.0/24 addresses at once
# without colliding in the root routing table, (2) nothing of the machine's own networking
# (eth0, docker0, ...) is changed, and (3) Open MPI cannot wander onto another interface.
# All addresses are in 198.18.0.0/24 (RFC 2544 benchmarking range, never private or
# public). The head is not in the hostfile: mpirun starts ranks only on the PREFIX-hI.
#
# How a host runs a command (scripts/sim_cluster_rsh.sh, the rsh agent): `ip netns exec
# PREFIX-hI unshare --uts` with hostname PREFIX-hI and a clean, ssh-like environment. Each
# launch gets its own UTS namespace with the same name, so every process on a host sees
# the host's name. All hosts share the file system, so the build tree and orted are the
# same everywhere, as on a cluster with a shared home.
#
# `run -- ARGS` executes, in PREFIX-head:
#   mpirun --hostfile STATE/hostfile --mca plm_rsh_agent scripts/sim_cluster_rsh.sh
#          --mca plm_rsh_no_tree_spawn 1 --mca btl tcp,self
#          --mca btl_tcp_if_include 198.18.0.0/24 --mca oob_tcp_if_include 198.18.0.0/24 ARGS
# with OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 and PENG_SIM_PREFIX set. Like over ssh, ranks get
# a clean environment: pass variables with `-x NAME[=VALUE]` (e.g. -x OMP_NUM_THREADS=1).
# Ranks are placed by slot: with 2 slots, world ranks 0,1 on h0, 2,3 on h1, and so on.
#
# Failure detection: a cut link (`link-down`) drops packets silently, as a dead switch port
# would; TCP notices only when its retransmissions give up (Linux default: ~15 minutes).
# The hosts keep that default, so ranks talking to a cut-off host hang in their collective
# as on a real cluster (what peng's collective timeout must turn into an error). The head
# namespace alone gets net.ipv4.tcp_retries2=5 (a namespaced sysctl; the machine's own is
# untouched), so mpirun gives up on an unreachable orted ~13 s after it has something to
# tell it (e.g. "kill your ranks" when the job aborts) and the job ends instead of hanging.
#
# Open MPI (4.1) notes: the hostfile's names need not resolve (no DNS, no /etc/hosts
# entries): mpirun hands them to the agent, and orted reports its own addresses back.
# Tree spawn is off (plm_rsh_no_tree_spawn) so that mpirun itself starts every orted. The
# agent must be a path without spaces (plm_rsh_agent is split on spaces, as in "ssh -x").
# "plm:rsh: Warning: setpgid(...) failed in parent with errno=Permission denied(13)" is
# harmless: the agent exec'd before mpirun set its process group (a race; ssh has it too).
#
# State (the hostfile) lives in ${PENG_SIM_STATE:-/run/peng-sim}/PREFIX; `down` removes it.
# Errors: one `error: ...` line on stderr and a non-zero exit (not root, no `ip netns`, a
# cluster that already exists or does not, a bad prefix, host or count). A failed `up`
# removes what it created, unless PENG_SIM_DEBUG is set (to inspect it; then `down`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rsh_agent=$here/sim_cluster_rsh.sh
state_root=${PENG_SIM_STATE:-/run/peng-sim}
subnet=198.18.0.0/24
bridge_addr=198.18.0.1
max_hosts=64

die() {
  echo "error: sim_cluster.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

check_prefix() {
  [[ $1 =~ ^[a-z][a-z0-9]{0,19}$ ]] ||
    die "bad prefix '$1' (want [a-z][a-z0-9]*, at most 20 characters)"
}

# Refuses clearly where the cluster cannot exist.
check_can_run() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces); run as root"
  command -v ip >/dev/null || die "'ip' (iproute2) not found"
  command -v unshare >/dev/null || die "'unshare' (util-linux) not found"
  ip netns list >/dev/null 2>&1 || die "'ip netns' is not available here"
}

head_ns() { echo "$prefix-head"; }
host_ns() { echo "$prefix-h$1"; }
host_addr() { echo "198.18.0.$((10 + $1))"; }

# Indices of the cluster's hosts, ascending.
host_indices() {
  ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^$prefix-h\([0-9][0-9]*\)\$/\1/p" |
    sort -n
}

is_up() { [ -e "/run/netns/$(head_ns)" ]; }

# HOST (PREFIX-hI, hI, I or 198.18.0.(10+I)) -> I, checked against the running cluster.
host_index() {
  local h=$1 i
  case $h in
    "$prefix"-h*) i=${h#"$prefix"-h} ;;
    h*) i=${h#h} ;;
    198.18.0.*) i=$((${h#198.18.0.} - 10)) 2>/dev/null || i=x ;;
    *) i=$h ;;
  esac
  [[ $i =~ ^[0-9]+$ ]] && [ -e "/run/netns/$(host_ns "$i")" ] ||
    die "no host '$h' in cluster '$prefix' (hosts: $(host_indices | sed "s/^/$prefix-h/" | paste -sd ' '))"
  echo "$i"
}

kill_ns_processes() {
  local ns=$1 pids
  [ -e "/run/netns/$ns" ] || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086  # one pid per word
  kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 50); do
    [ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ] && return 0
    sleep 0.1
  done
}

cmd_down() {
  check_can_run
  local ns
  for ns in $(host_indices | sed "s/^/$prefix-h/") "$(head_ns)"; do
    kill_ns_processes "$ns"
    # Deleting a namespace destroys its interfaces: the host's veth end takes its bridge
    # end with it; the head's bridge goes with the head.
    [ -e "/run/netns/$ns" ] && { ip netns delete "$ns" 2>/dev/null || true; }
  done
  rm -rf "${state_root:?}/$prefix"
  rmdir "$state_root" 2>/dev/null || true  # when no other cluster uses it
  if is_up || [ -n "$(host_indices)" ]; then
    die "could not remove every namespace of '$prefix': $(ip netns list | grep "^$prefix-" | tr '\n' ' ')"
  fi
}

write_hostfile() {
  local slots=$1 i
  for i in $(host_indices); do
    echo "$(host_ns "$i") slots=$slots"
  done
}

undo_failed_up() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "error: sim_cluster.sh: up $prefix failed; removing what was created" >&2
    cmd_down >/dev/null 2>&1 || true
  fi
}

cmd_up() {
  local n=${1:-}
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $max_hosts ] ||
    die "up: host count '$n' must be 1..$max_hosts"
  check_can_run
  if is_up || [ -n "$(host_indices)" ]; then
    die "cluster '$prefix' already exists (scripts/sim_cluster.sh down $prefix first)"
  fi
  local slots=${PENG_SIM_SLOTS:-2}
  [[ $slots =~ ^[1-9][0-9]*$ ]] || die "PENG_SIM_SLOTS '$slots' is not a positive count"
  # From here on, a failure removes whatever was built.
  [ -n "${PENG_SIM_DEBUG:-}" ] || trap undo_failed_up EXIT
  local head i ns
  head=$(head_ns)
  ip netns add "$head" || die "cannot create network namespace '$head' (ip netns add)"
  ip -n "$head" link set lo up
  sysctl_in "$head"
  ip -n "$head" link add br0 type bridge || die "cannot create a bridge in '$head'"
  ip -n "$head" addr add "$bridge_addr/24" dev br0
  ip -n "$head" link set br0 up
  for ((i = 0; i < n; i++)); do
    ns=$(host_ns "$i")
    ip netns add "$ns" || die "cannot create network namespace '$ns'"
    ip -n "$ns" link set lo up
    ip -n "$head" link add "v$i" type veth peer name eth0 netns "$ns" ||
      die "cannot create a veth pair for '$ns'"
    ip -n "$head" link set "v$i" master br0
    ip -n "$head" link set "v$i" up
    ip -n "$ns" addr add "$(host_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  mkdir -p "$state_root/$prefix"
  write_hostfile "$slots" >"$state_root/$prefix/hostfile"
  # Wait until every host answers on TCP from the head (bridge ports start forwarding).
  for ((i = 0; i < n; i++)); do
    wait_reachable "$i" || die "host $(host_ns "$i") ($(host_addr "$i")) unreachable from the head"
  done
  trap - EXIT
  echo "cluster '$prefix' up: $n hosts ($(host_ns 0) = $(host_addr 0) ..), head $head = $bridge_addr;" \
    "hostfile $state_root/$prefix/hostfile"
}

# TCP gives up on an unacknowledged peer after ~13 s instead of ~15 min (namespaced sysctl:
# only namespace $1 changes).
sysctl_in() {
  ip netns exec "$1" sh -c 'echo 5 > /proc/sys/net/ipv4/tcp_retries2' ||
    echo "warning: sim_cluster.sh: cannot set tcp_retries2 in $1; a cut link may take minutes to end a job" >&2
}

# True once a TCP connection from the head to host I's address gets an answer (a refusal
# counts: it proves the path works).
wait_reachable() {
  local addr out
  addr=$(host_addr "$1")
  for _ in $(seq 50); do
    out=$(ip netns exec "$(head_ns)" timeout 1 bash -c "exec 3<>/dev/tcp/$addr/9" 2>&1 || true)
    [[ ${out,,} == *refused* ]] && return 0
    sleep 0.1
  done
  return 1
}

require_up() {
  check_can_run
  is_up || die "cluster '$prefix' is not up (scripts/sim_cluster.sh up N $prefix)"
}

cmd_hostfile() {
  require_up
  local slots=${1:-${PENG_SIM_SLOTS:-}}
  if [ -z "$slots" ]; then
    cat "$state_root/$prefix/hostfile"
  else
    [[ $slots =~ ^[1-9][0-9]*$ ]] || die "hostfile: slots '$slots' is not a positive count"
    write_hostfile "$slots"
  fi
}

cmd_run() {
  [ "${1:-}" = "--" ] && shift
  require_up
  command -v mpirun >/dev/null || die "mpirun not found"
  local hf=$state_root/$prefix/hostfile agent=$rsh_agent
  [ -f "$hf" ] || die "no hostfile $hf (was the cluster made by this script?)"
  # Open MPI splits plm_rsh_agent on spaces ("ssh -x"), so its path must have none.
  [[ $agent != *[[:space:]]* ]] || die "the rsh agent's path '$agent' contains a space"
  [ -x "$agent" ] || agent="bash $agent"  # lost its execute bit in a copy
  exec ip netns exec "$(head_ns)" env PENG_SIM_PREFIX="$prefix" \
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --hostfile "$hf" \
    --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" \
    "$@"
}

cmd_exec() {
  require_up
  [ $# -ge 2 ] || die "exec: usage: exec HOST CMD..."
  local i
  i=$(host_index "$1")
  shift
  PENG_SIM_PREFIX=$prefix exec "$rsh_agent" "$(host_ns "$i")" "$@"
}

cmd_link() {
  local state=$1 i
  require_up
  [ $# -eq 2 ] || die "link-$state: usage: link-$state HOST"
  i=$(host_index "$2")
  ip -n "$(head_ns)" link set "v$i" "$state"
  echo "$(host_ns "$i") ($(host_addr "$i")) link $state"
}

cmd_status() {
  require_up
  local i
  echo "head $(head_ns): $(ip -n "$(head_ns)" -br addr show br0 | awk '{print $2, $3}')"
  for i in $(host_indices); do
    echo "$(host_ns "$i"): $(ip -n "$(head_ns)" -br link show "v$i" | awk '{print "link", $2}')," \
      "$(ip -n "$(host_ns "$i")" -br addr show eth0 | awk '{print $3}')"
  done
}

prefix=${PENG_SIM_PREFIX:-peng}
if [ "${1:-}" = "-p" ]; then
  [ $# -ge 2 ] || die "-p needs a prefix"
  prefix=$2
  shift 2
fi
sub=${1:-}
[ $# -gt 0 ] && shift
case $sub in
  up)
    [ $# -ge 2 ] && prefix=$2
    [ $# -le 2 ] || die "up: usage: up N [PREFIX]"
    check_prefix "$prefix"
    cmd_up "${1:-}"
    ;;
  down)
    [ $# -ge 1 ] && prefix=$1
    [ $# -le 1 ] || die "down: usage: down [PREFIX]"
    check_prefix "$prefix"
    cmd_down
    ;;
  hostfile) check_prefix "$prefix"; cmd_hostfile "$@" ;;
  run) check_prefix "$prefix"; cmd_run "$@" ;;
  exec) check_prefix "$prefix"; cmd_exec "$@" ;;
  link-down) check_prefix "$prefix"; cmd_link down "$@" ;;
  link-up) check_prefix "$prefix"; cmd_link up "$@" ;;
  status) check_prefix "$prefix"; cmd_status ;;
  -h | --help | help) usage ;;
  '') usage >&2; exit 2 ;;
  *) die "unknown subcommand '$sub' (up, down, hostfile, run, exec, link-down, link-up, status)" ;;
esac
