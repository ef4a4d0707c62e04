package limiter_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

func ExampleNew() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})

	// Optional: load the scripts now, so the first requests cost one round trip each.
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		log.Fatal(err)
	}
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		log.Fatal(err)
	}

	// 10 requests per second per user, in bursts of up to 20.
	res, err := lim.Allow(ctx, "user:42", limiter.PerSecond(10).WithBurst(20))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Allowed, res.Remaining)
}

func ExampleLimiter_Allow() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	lim, err := limiter.New(rdb, limiter.SlidingWindow)
	if err != nil {
		log.Fatal(err)
	}
	perIP := limiter.PerMinute(100)

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		res, err := lim.Allow(r.Context(), r.RemoteAddr, perIP)
		if err != nil {
			// Redis is down or slow: this handler chooses to fail closed.
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		if !res.Allowed {
			w.Header().Set("Retry-After", strconv.Itoa(int((res.RetryAfter+time.Second-1)/time.Second)))
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		fmt.Fprintln(w, "hello")
	})
}

func ExampleLimiter_AllowAll() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	lim, err := limiter.New(rdb, limiter.FixedWindow)
	if err != nil {
		log.Fatal(err)
	}

	// 10 per second and 1000 per hour: the request counts against both, or neither.
	res, err := lim.AllowAll(ctx, "api-key:7f3a", 1, limiter.PerSecond(10), limiter.PerHour(1000))
	if err != nil {
		log.Fatal(err)
	}
	if !res.Allowed {
		fmt.Printf("limited by %v; retry in %v\n", res.Limit, res.RetryAfter)
	}
	for _, r := range res.All {
		fmt.Printf("%v: %d left\n", r.Limit, r.Remaining)
	}
}

func ExampleLimiter_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		log.Fatal(err)
	}

	// Call a partner API at most 5 times per second from every instance together.
	for range 20 {
		if _, err := lim.Wait(ctx, "partner-api", limiter.PerSecond(5)); err != nil {
			log.Fatal(err)
		}
		// ... call the partner API ...
	}
}
