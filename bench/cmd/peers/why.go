package main

import (
	"github.com/gatehouse/gatehouse/bench/contenders"
	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/redis/go-redis/v9"
)

// whyEntries are the contenders of issue #12's question, why docs/benchmarks.md reported 1.9x
// redis_rate with auto-pipelining and the harness 1.13x, under variants that each change
// one setting of the harness towards the older b.RunParallel one, the older one whole, and
// both beside a process that keeps one core busy, and the with go-redis' full-duplex
// auto-pipeliner. All run at 64 goroutines (b.RunParallel with
// SetParallelism(32) on GOMAXPROCS 2), interleaved in one run.
func whyEntries(o *options) []harness.Entry {
	base := harness.Variant{
		Name: "issue", PoolSize: o.pool, Keys: o.keys, Pattern: harness.Random,
		Limits: harness.Persistent, Goroutines: []int{64},
	}
	variants := []harness.Variant{base}
	add := func(name string, change func(*harness.Variant)) {
		v := base
		v.Name = name
		change(&v)
		variants = append(variants, v)
	}
	add("pool-64", func(v *harness.Variant) { v.PoolSize = 64 })
	add("separate-clients", func(v *harness.Variant) { v.Separate = true })
	add("keys-1000", func(v *harness.Variant) { v.Keys = 1000 })
	add("lockstep", func(v *harness.Variant) { v.Pattern = harness.Lockstep })
	add("huge-rate", func(v *harness.Variant) { v.Limits = harness.HugeRate })
	old := func(v *harness.Variant) {
		v.PoolSize, v.Separate, v.Keys, v.Pattern, v.Limits = 64, true, 1000, harness.Lockstep, harness.HugeRate
	}
	add("old-harness", old)
	// The same two harnesses on a machine whose other work keeps one core busy.
	add("issue+1-busy-core", func(v *harness.Variant) { v.Hogs = 1 })
	add("old-harness+1-busy-core", func(v *harness.Variant) { old(v); v.Hogs = 1 })
	// go-redis' auto-pipeliner keeps one batch in flight and reads its replies before it writes
	// the next; full duplex writes while it reads, on one held connection.
	add("issue+full-duplex", func(v *harness.Variant) { v.AutoPipe = &redis.AutoPipelineOptions{FullDuplex: true} })
	want := map[string]bool{"redis_rate": true, "gatehouse-tb": true, "gatehouse-tb-auto": true, "redis_rate-auto": true}
	var entries []harness.Entry
	for _, v := range variants {
		for _, c := range contenders.Limiters() {
			if want[c.ID] {
				entries = append(entries, harness.Entry{Contender: c, Variant: v})
			}
		}
	}
	return entries
}
