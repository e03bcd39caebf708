#!/usr/bin/env bash
# Test hosts for reduce: N network namespaces on one bridge, each peer's uplink
# rate-limited with tc tbf (netem does not exist on these kernels). Everything
# lives in namespaces this script creates; nothing touches the host's network.
#
#   scripts/netns.sh up PREFIX N RATE_MBIT   # peers PREFIX-0..N-1 at 10.213.0.1..N
#   scripts/netns.sh down PREFIX N
#   ip netns exec PREFIX-0 COMMAND ...       # run a peer
set -euo pipefail
cmd=${1:?up|down} prefix=${2:?prefix} n=${3:?peers}
case $cmd in
up)
  rate=${4:?rate in Mbit/s}
  sw=$prefix-sw
  ip netns add "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  ip -n "$sw" link set lo up
  for i in $(seq 0 $((n-1))); do
    ns=$prefix-$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "d${prefix: -6}$i" type veth peer name "s${prefix: -6}$i"
    ip link set "d${prefix: -6}$i" netns "$ns"
    ip link set "s${prefix: -6}$i" netns "$sw"
    ip -n "$ns" link set "d${prefix: -6}$i" name eth0
    ip -n "$ns" addr add "10.213.0.$((i+1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$sw" link set "s${prefix: -6}$i" master br0
    ip -n "$sw" link set "s${prefix: -6}$i" up
    # the peer's uplink: RATE Mbit/s, a few ms of queue
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "${rate}mbit" burst 256kb latency 20ms
  done
  ;;
down)
  for i in $(seq 0 $((n-1))); do ip netns del "$prefix-$i" 2>/dev/null || true; done
  ip netns del "$prefix-sw" 2>/dev/null || true
  ;;
*) echo "usage: $0 up PREFIX N RATE_MBIT | down PREFIX N" >&2; exit 2 ;;
esac
