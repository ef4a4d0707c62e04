#!/usr/bin/env bash
# lean: a module of a user's that imports the limiter, its HTTP middleware and the session store
# must see, in 'go list -m all', no module beyond gatehouse itself and what a module importing just
# go-redis, the OpenTelemetry API and the msgpack codec sees. Both modules are built in a scratch
# directory outside the repository (gatehouse through a replace directive), at the versions the
# root go.mod requires; the script prints both counts and fails, listing them, on any module extra.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
export GOWORK=off GOFLAGS=-mod=mod
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The versions gatehouse requires of the modules the baseline imports.
version() { (cd "$repo" && $GO list -m -f '{{.Version}}' "$1"); }
base_mods=(github.com/redis/go-redis/v9 go.opentelemetry.io/otel go.opentelemetry.io/otel/metric
  go.opentelemetry.io/otel/trace github.com/vmihailenco/msgpack/v5)

mkdir "$scratch/base" "$scratch/user"
{
  echo 'module example.com/base'
  echo 'go 1.26.0'
  for m in "${base_mods[@]}"; do echo "require $m $(version "$m")"; done
} > "$scratch/base/go.mod"
cat > "$scratch/base/main.go" <<'GO'
package main

import (
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

var (
	_ = redis.NewClient
	_ = msgpack.Marshal
	_ = otel.GetTracerProvider
	_ metric.Meter
	_ trace.Tracer
)

func main() {}
GO

cat > "$scratch/user/go.mod" <<GOMOD
module example.com/user

go 1.26.0

require github.com/gatehouse/gatehouse v0.0.0

replace github.com/gatehouse/gatehouse => $repo
GOMOD
cat > "$scratch/user/main.go" <<'GO'
package main

import (
	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
	"github.com/gatehouse/gatehouse/session"
)

var (
	_ = gatehouse.Preload
	_ = limiter.New
	_ = limithttp.Middleware // the HTTP middleware
	_ = session.NewStore
)

func main() {}
GO

for m in base user; do
  (cd "$scratch/$m" && $GO mod tidy >/dev/null && $GO build ./... && $GO list -m all > ../$m.all)
  tail -n +2 "$scratch/$m.all" | sort > "$scratch/$m.mods" # without the module itself
done
extra=$(comm -23 <(grep -v '^github.com/gatehouse/gatehouse ' "$scratch/user.mods") "$scratch/base.mods")
echo "lean: 'go list -m all' of a module importing limiter, its HTTP middleware and session:" \
  "$(wc -l < "$scratch/user.all") modules (itself, gatehouse and $(grep -vc '^github.com/gatehouse/gatehouse ' "$scratch/user.mods") more);" \
  "of a module importing just go-redis, the OpenTelemetry API and msgpack: $(wc -l < "$scratch/base.all")" \
  "(itself and $(wc -l < "$scratch/base.mods") more)"
if [ -n "$extra" ]; then
  echo "lean: modules (or versions) beyond gatehouse and the baseline's:" >&2
  echo "$extra" >&2
  exit 1
fi
