package integration

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
)

// Decisions through a Redis 1 ms away (toxiproxy adds 1 ms to every reply), each its own call
// (WithoutCoalescing) and coalesced (the default), by concurrency: on loopback the server's CPU
// decides, here the round trip does. Reports each decision's p50 and p99 latency beside the time
// per decision. A coalesced decision that finds the node's calls under way waits for one of them
// to return before it is sent; the calls under way per node widen with its distance so that it
// seldom must. docs/benchmarks.md has runs. (Toxiproxy copies every byte in this process: with
// many connections, as 64 goroutines' own calls use, it costs the client CPU of its own.)
func BenchmarkRemoteRedis(b *testing.B) {
	for _, g := range []int{2, 4, 16, 64} {
		for _, mode := range []struct {
			name string
			opts []limiter.Option
		}{{"plain", []limiter.Option{limiter.WithoutCoalescing()}}, {"coalesced", nil}} {
			b.Run(fmt.Sprintf("goroutines=%d/%s", g, mode.name), func(b *testing.B) {
				f := newFaultyRedis(b)
				f.client.Options().PoolSize = 128
				f.toxic(b, "latency", "latency", "downstream", `"latency":1,"jitter":0`)
				lim, err := limiter.New(f.client, limiter.TokenBucket, mode.opts...)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				limit := limiter.PerSecond(1 << 30)
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(max(g/runtime.GOMAXPROCS(0), 1)) // g goroutines where GOMAXPROCS divides g
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					i := 0
					for pb.Next() {
						i++
						t := time.Now()
						if _, err := lim.Allow(ctx, "k"+strconv.Itoa(i%1000), limit); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				slices.Sort(lat)
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				}
			})
		}
	}
}
