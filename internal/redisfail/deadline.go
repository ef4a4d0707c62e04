package redisfail

import "github.com/redis/go-redis/v9"

// HonoursDeadlines reports whether client applies context deadlines to its network calls, as a
// per-operation timeout (the limiter's and the session store's WithTimeout) needs: go-redis
// ignores them unless the client's options set ContextTimeoutEnabled. Clients of unknown types are
// trusted.
func HonoursDeadlines(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}
