#!/usr/bin/env bash
# The "remote shell" of the simulated cluster (scripts/sim_cluster.sh): Open MPI's rsh
# launcher runs it as it would run ssh,
#
#   sim_cluster_rsh.sh [-x] HOST WORD...
#
# and it runs WORD... (joined by spaces and handed to `sh -c`, as sshd does) on HOST: inside
# HOST's network namespace (`ip netns exec`), in a fresh UTS namespace whose hostname is
# HOST's name, with a clean environment like an ssh login (PATH, HOME, LD_LIBRARY_PATH,
# TMPDIR, LANG, USER kept; everything else must travel with `mpirun -x`).
#
# HOST is a host's name (PREFIX-hI, as in the hostfile) or its address 198.18.0.(10+I); an
# address needs PENG_SIM_PREFIX (set by `sim_cluster.sh run`) to pick the cluster, since
# every cluster uses the same addresses. Exits 255 (ssh's "could not connect") with an
# `error:` line when HOST is not a host of a running cluster.
set -u -o pipefail

die() {
  echo "error: sim_cluster_rsh.sh: $*" >&2
  exit 255
}

# Leading ssh-style options (Open MPI passes none to a non-ssh agent, but be lenient).
while [ $# -gt 0 ]; do
  case $1 in
    -x | -X | -n | -T | -q) shift ;;
    --) shift; break ;;
    -*) die "unsupported option '$1'" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "usage: sim_cluster_rsh.sh HOST COMMAND..."
host=$1
shift

case $host in
  198.18.0.*)
    last=${host#198.18.0.}
    case $last in '' | *[!0-9]*) die "unknown host '$host'" ;; esac
    [ "$last" -ge 10 ] 2>/dev/null || die "unknown host '$host' (hosts are 198.18.0.10 and up)"
    [ -n "${PENG_SIM_PREFIX:-}" ] ||
      die "host '$host' is an address: set PENG_SIM_PREFIX to say which simulated cluster"
    name=$PENG_SIM_PREFIX-h$((last - 10))
    ;;
  *-h[0-9]*)
    name=$host
    ;;
  *)
    die "unknown host '$host' (expected PREFIX-hI or 198.18.0.X)"
    ;;
esac
case $name in *[!a-z0-9-]*) die "unknown host '$host'" ;; esac
[ -e "/run/netns/$name" ] || die "host '$host': no network namespace '$name' (is the cluster up?)"

# No command: nothing to do (ssh would open a login shell).
[ $# -ge 1 ] || exit 0

keep=(PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}" HOME="${HOME:-/root}" USER="${USER:-$(id -un)}"
      SIM_CLUSTER_HOST="$name")
for v in LD_LIBRARY_PATH TMPDIR LANG; do
  [ -n "${!v:-}" ] && keep+=("$v=${!v}")
done
exec ip netns exec "$name" unshare --uts env -i "${keep[@]}" \
  sh -c 'hostname "$1" || exit 255; shift; exec sh -c "$*"' sim-rsh "$name" "$@"
