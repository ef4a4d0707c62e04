#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when dockerd is missing (as root,
# with apt-get), and starts dockerd in the background when none is running.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "dockerd: installing docker.io with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  else
    echo "dockerd: no Docker engine; install Docker to run the testcontainers backend" >&2
    exit 1
  fi
fi
log=${TMPDIR:-/tmp}/gatehouse-dockerd.log
echo "dockerd: starting (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "dockerd: did not come up within 60s; last lines of $log:" >&2
tail -20 "$log" >&2
exit 1
