// Package gatehouse is the root of gatehouse: a rate limiter (package limiter, with its HTTP
// middleware and limiter/limitgrpc) and a session store (package session) for Go services, built
// on atomic Lua scripts that run in Redis.
//
// Every decision and every session operation is one script call. A script is sent by its SHA1
// with EVALSHA; when a server answers NOSCRIPT (a fresh server, a restart, SCRIPT FLUSH, a failover
// to a replica), the script is loaded on the node that answered and the call is sent once more:
// the caller sees no error. This package's one function, Preload, loads every script ahead of
// traffic, so that a warm server sees one EVALSHA per call.
//
// All of this works with any redis.UniversalClient: a single server, a Sentinel failover client, a
// Cluster, or a Ring. docs/runtime.md describes the script runtime.
package gatehouse

import (
	"context"

	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// Preload loads every script gatehouse uses on every node the client knows: each master and replica
// of a Cluster (so that a replica promoted by a failover has them too), each shard of a Ring,
// otherwise the one server. After it, a call costs exactly one EVALSHA on the server. Calling it is
// optional: without it, the first call of each script on each node costs one extra SCRIPT LOAD.
func Preload(ctx context.Context, c redis.UniversalClient) error {
	return script.Preload(ctx, c)
}
