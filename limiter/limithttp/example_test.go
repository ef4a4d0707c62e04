package limithttp_test

import (
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
	"github.com/redis/go-redis/v9"
)

func ExampleMiddleware() {
	// Decisions wait at most 50ms for Redis; past that, or with Redis down, requests are admitted
	// (and the failure shows on spans and metrics). ContextTimeoutEnabled lets go-redis honour it.
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	lim, err := limiter.New(rdb, limiter.TokenBucket,
		limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithTimeout(50*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}

	api := http.NewServeMux()
	api.HandleFunc("GET /orders", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "[]") })

	// 10 requests per second per client address, in bursts of 20, and 1000 per hour. Responses
	// carry RateLimit-Policy and RateLimit; refusals are 429 with Retry-After.
	limits := []limiter.Limit{
		limiter.PerSecond(10).WithBurst(20).WithName("burst"),
		limiter.PerHour(1000).WithName("hourly"),
	}
	http.ListenAndServe(":8080", limithttp.Middleware(lim, limithttp.ByRemoteIP, limits)(api))
}

func ExampleByClientIP() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		log.Fatal(err)
	}

	key, err := limithttp.ByClientIP(limithttp.ClientIP{
		TrustedProxies: []string{"10.0.0.0/8", "2001:db8:ffff::/48"}, // the load balancers
		Header:         "X-Forwarded-For",                            // or "Forwarded" (RFC 7239)
		IPv6Prefix:     64,                                           // the default
	})
	if err != nil {
		log.Fatal(err) // a proxy that is neither an address nor a CIDR range
	}

	api := http.NewServeMux()
	http.ListenAndServe(":8080", limithttp.Middleware(lim, key, []limiter.Limit{limiter.PerSecond(10)})(api))
}
