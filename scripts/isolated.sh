#!/usr/bin/env bash
# Runs a command with ROS 2 kept on this machine:
#  - always ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Fast DDS then sends nothing off loopback);
#  - inside a private network namespace (unshare -n, loopback up) when we may create one,
#    with a private /dev/shm when we may mount one (unshare -m): Fast DDS's shared-memory
#    transport names its files by port, so two runs on one host in the same domain would
#    otherwise talk through /dev/shm behind the network namespaces' back (and map each
#    other's files); together they isolate the run from any other ROS system on this host;
#  - otherwise (no permission for namespaces) a random ROS_DOMAIN_ID keeps it apart from
#    other ROS systems on the LAN and on this host.
set -euo pipefail
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ "${FLEET_COORD_IN_NETNS:-}" != 1 ] && command -v unshare >/dev/null 2>&1 \
   && unshare -n true 2>/dev/null; then
  export FLEET_COORD_IN_NETNS=1
  # ip may not be on a non-root PATH; fall back to python's socket ioctl is overkill: require ip.
  if unshare -n -m -- mount -t tmpfs tmpfs /dev/shm 2>/dev/null; then
    exec unshare -n -m -- bash -c \
      'ip link set lo up && mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"' bash "$@"
  fi
  exec unshare -n -- bash -c 'ip link set lo up && exec "$@"' bash "$@"
fi
if [ "${FLEET_COORD_IN_NETNS:-}" != 1 ]; then
  export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}
  echo "isolated: no network namespace available here; using LOCALHOST discovery and ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
fi
exec "$@"
