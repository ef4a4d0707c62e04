#!/usr/bin/env bash
# space: the tests build every module with the race detector, which takes a few GiB in Go's build
# cache. A build cache left to grow over months of builds can fill the disk, and the tests then fail
# with "no space left on device" halfway through. When the cache's disk has less than
# GATEHOUSE_MIN_FREE_GIB (default 8) free, this script empties Go's build cache first (saying so),
# and fails with what it found if the disk is still short of GATEHOUSE_MIN_FREE_GIB / 4.
set -euo pipefail
GO=${GO:-go}
min=${GATEHOUSE_MIN_FREE_GIB:-8}
cache=$($GO env GOCACHE)
mkdir -p "$cache"
free_gib() { df -Pk "$cache" | awk 'NR==2 { printf "%d", $4 / 1048576 }'; }
free=$(free_gib)
if (( free >= min )); then
  exit 0
fi
echo "space: $free GiB free on the disk of Go's build cache ($cache), under $min GiB: emptying the cache ($(du -sh "$cache" 2>/dev/null | cut -f1))"
$GO clean -cache
free=$(free_gib)
if (( free * 4 < min )); then
  echo "space: still only $free GiB free after emptying Go's build cache; the race-enabled builds need a few GiB." >&2
  echo "space: free some disk space, or point GOCACHE at a disk with room." >&2
  exit 1
fi
echo "space: $free GiB free now"
