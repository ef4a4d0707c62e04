#!/usr/bin/env bash
# Builds the local Docker image the testcontainers backend runs (default tag gatehouse-redis:local):
# the installed redis-server and the shared libraries it links, in an otherwise empty image.
# No registry is needed (these machines reach none), so nothing is pulled: the image is imported.
set -euo pipefail
tag=${GATEHOUSE_REDIS_IMAGE:-gatehouse-redis:local}
bin=$(command -v redis-server) || { echo "redis-image: redis-server not found" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/data" "$root/tmp"
cp "$bin" "$root/usr/bin/redis-server"
# Every library ldd lists, by its resolved path, including the dynamic loader.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" -c . | docker import \
  -c 'WORKDIR /data' \
  -c 'EXPOSE 6379' \
  -c 'ENTRYPOINT ["/usr/bin/redis-server"]' \
  -c 'CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]' \
  - "$tag" >/dev/null
echo "redis-image: built $tag from $bin ($("$bin" --version | awk '{print $3}'))"
