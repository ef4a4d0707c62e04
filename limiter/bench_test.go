package limiter_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/limiter"
)

// Benchmarks run against the first selected backend ('make bench' selects a private standalone
// server). Compare figures within one run: absolute numbers depend on the machine.

func benchLimiter(b *testing.B, alg limiter.Algorithm, opts ...limiter.Option) *limiter.Limiter {
	be := redistest.Get(b, redistest.Names()[0])
	if err := gatehouse.Preload(context.Background(), be.Client); err != nil {
		b.Fatal(err)
	}
	lim, err := limiter.New(be.Client, alg, append(opts, limiter.WithKeyPrefix(redistest.Prefix(b)))...)
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

// benchKeys are the identifiers the benchmarks cycle through, made once so that building them is not
// counted.
var benchKeys = func() []string {
	k := make([]string, 1000)
	for i := range k {
		k[i] = "client-" + strconv.Itoa(i)
	}
	return k
}()

// benchLimit is a limit the benchmark never exhausts.
func benchLimit(alg limiter.Algorithm) limiter.Limit {
	if alg == limiter.SlidingLog {
		return limiter.PerSecond(limiter.MaxSlidingLogRate)
	}
	return limiter.PerSecond(1 << 30)
}

// The floor under every decision: go-redis sending one EVALSHA of a trivial script and decoding
// its integer reply, with no gatehouse code in the way.
func BenchmarkEvalshaBaseline(b *testing.B) {
	be := redistest.Get(b, redistest.Names()[0])
	ctx := context.Background()
	clock, _ := script.Lookup("clock")
	if err := clock.Load(ctx, be.Client); err != nil {
		b.Fatal(err)
	}
	keys := []string{"k"}
	b.ReportAllocs()
	for b.Loop() {
		if err := be.Client.EvalSha(ctx, clock.SHA1(), keys).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// One caller, one key at a time: the latency of a decision, one round trip, sent as a call of its
// own (WithoutCoalescing) and coalesced (the default, where a lone caller's decision is one call of one decision).
func BenchmarkAllow(b *testing.B) {
	for _, a := range algorithms {
		for _, send := range sendModes {
			b.Run(a.alg.String()+send.suffix, func(b *testing.B) { allow(b, a.alg, send.opts) })
		}
	}
}

func allow(b *testing.B, alg limiter.Algorithm, opts []limiter.Option) {
	lim := benchLimiter(b, alg, opts...)
	ctx := context.Background()
	limit := benchLimit(alg)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := lim.Allow(ctx, benchKeys[i%len(benchKeys)], limit); err != nil {
			b.Fatal(err)
		}
	}
}

// Many concurrent callers over many keys: decisions per second through one client, each decision
// its own round trip (WithoutCoalescing), then coalesced (the default) and with WithAutoPipeline.
func BenchmarkAllowParallel(b *testing.B) {
	for _, a := range algorithms {
		for _, send := range append(sendModes, sendMode{"/auto-pipeline", []limiter.Option{limiter.WithAutoPipeline()}}) {
			b.Run(a.alg.String()+send.suffix, func(b *testing.B) { allowParallel(b, a.alg, send.opts) })
		}
	}
}

func allowParallel(b *testing.B, alg limiter.Algorithm, opts []limiter.Option) {
	lim := benchLimiter(b, alg, opts...)
	ctx := context.Background()
	limit := benchLimit(alg)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := lim.Allow(ctx, benchKeys[i%len(benchKeys)], limit); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Two limits checked and counted in one script call.
func BenchmarkAllowAll(b *testing.B) {
	lim := benchLimiter(b, limiter.TokenBucket)
	ctx := context.Background()
	limits := []limiter.Limit{limiter.PerSecond(1 << 20), limiter.PerHour(1 << 30)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := lim.AllowAll(ctx, benchKeys[i%len(benchKeys)], 1, limits...); err != nil {
			b.Fatal(err)
		}
	}
}

// A client that keeps knocking while refused: every refusal from Redis, against the deny cache.
func BenchmarkRefused(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := "redis"
		var opts []limiter.Option
		if cached {
			name, opts = "deny_cache", []limiter.Option{limiter.WithDenyCache(10000)}
		}
		b.Run(name, func(b *testing.B) {
			be := redistest.Get(b, redistest.Names()[0])
			lim, err := limiter.New(be.Client, limiter.TokenBucket, append(opts, limiter.WithKeyPrefix(redistest.Prefix(b)))...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			limit := limiter.PerHour(1)
			lim.Allow(ctx, "hammer", limit)
			b.ReportAllocs()
			for b.Loop() {
				if res, err := lim.Allow(ctx, "hammer", limit); err != nil || res.Allowed {
					b.Fatal(res, err)
				}
			}
		})
	}
}
