package coalesce

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// Decisions per second through a Batcher from 64 goroutines (2 × 32 on a 2-core machine) over
// 10,000 keys, by MaxInFlight and MaxBatch: compare within one run.
func BenchmarkDo(b *testing.B) {
	be := redistest.Get(b, redistest.Names()[0])
	ctx := context.Background()
	if err := bucketBatch.Load(ctx, be.Client); err != nil {
		b.Fatal(err)
	}
	prefix := redistest.Prefix(b)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = prefix + "{" + strconv.Itoa(i) + "}"
	}
	for _, opt := range []Options{{}, {MaxInFlight: 1}, {MaxInFlight: 2}, {MaxInFlight: 4}, {MaxInFlight: 2, MaxBatch: 16}, {MaxInFlight: 2, MaxBatch: 256}} {
		b.Run(fmt.Sprintf("inflight=%d/batch=%d", opt.MaxInFlight, opt.MaxBatch), func(b *testing.B) {
			bt := New(be.Client, bucket, bucketBatch, opt)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i += 7919
					if _, err := bt.Do(ctx, keys[i%len(keys):i%len(keys)+1], take(1_000_000), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			s := bt.Stats()
			b.ReportMetric(float64(s.Decisions)/float64(s.Calls), "decisions/call")
		})
	}
}
