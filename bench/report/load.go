package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/bench/harness"
)

// loadBins are ranges of the CPU the rest of the machine used during a round, in cores.
var loadBins = []struct{ lo, hi float64 }{{0, 0.3}, {0.3, 0.7}, {0.7, 1.1}, {1.1, 1.5}, {1.5, 1e9}}

// loadTable sorts the limiter rounds at each concurrency by the CPU the rest of the machine used
// meanwhile, pooling the variants that run the same workload (persistent limits, go-redis'
// default auto-pipeliner; pool size, clients, key count and order and busy processes may differ),
// and gives each contender's median rate per range, its ratio to the baseline's median in the
// same range, and the cores it kept busy. It shows which contenders are bound by CPU, whose rate
// falls as others take the cores, and which by something else.
func loadTable(b *strings.Builder, rep *harness.Report) {
	type key struct {
		contender string
		g         int
	}
	rounds := map[key][]harness.Round{}
	var levels []int
	var ids []string
	seenG, seenID := map[int]bool{}, map[string]bool{}
	for _, res := range rep.Results {
		info := rep.Contender(res.ID)
		if info == nil || info.Kind != harness.Limiter || info.Settings.Limits != string(harness.Persistent) ||
			info.Settings.AutoPipeline != "" {
			continue
		}
		k := key{info.Contender, res.Goroutines}
		rounds[k] = append(rounds[k], res.Rounds...)
		if !seenG[res.Goroutines] {
			seenG[res.Goroutines] = true
			levels = append(levels, res.Goroutines)
		}
		if !seenID[info.Contender] {
			seenID[info.Contender] = true
			ids = append(ids, info.Contender)
		}
	}
	if len(rounds) == 0 {
		return
	}
	sort.Ints(levels)
	b.WriteString("### Rates by the load of the rest of the machine\n\n" +
		"Rounds of the variants that run the same workload (persistent limits, go-redis' default " +
		"auto-pipeliner), sorted by the CPU the rest of the machine used meanwhile; per range, each " +
		"contender's median rate, its ratio to " + LimiterBaseline + "'s median in the same range, and the " +
		"cores it kept busy (client and server), with the number of rounds.\n\n")
	for _, g := range levels {
		fmt.Fprintf(b, "| others' cores (%d goroutines) |", g)
		for _, id := range ids {
			fmt.Fprintf(b, " %s |", cell(id))
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(ids)) + "\n")
		for _, bin := range loadBins {
			in := func(id string) []harness.Round {
				var v []harness.Round
				for _, r := range rounds[key{id, g}] {
					if r.OtherCores >= bin.lo && r.OtherCores < bin.hi {
						v = append(v, r)
					}
				}
				return v
			}
			base := medianOps(in(LimiterBaseline))
			var line strings.Builder
			filled := false
			for _, id := range ids {
				rs := in(id)
				if len(rs) == 0 {
					line.WriteString(" – |")
					continue
				}
				filled = true
				ops := medianOps(rs)
				fmt.Fprintf(&line, " %s", kilo(ops))
				if base > 0 {
					fmt.Fprintf(&line, " (%s)", ratioText(ops/base))
				}
				fmt.Fprintf(&line, ", %.2f cores, n=%d |", medianCores(rs), len(rs))
			}
			if !filled {
				continue
			}
			if bin.hi > 100 {
				fmt.Fprintf(b, "| ≥ %.1f |%s\n", bin.lo, line.String())
			} else {
				fmt.Fprintf(b, "| %.1f–%.1f |%s\n", bin.lo, bin.hi, line.String())
			}
		}
		b.WriteString("\n")
	}
}

func medianOps(rs []harness.Round) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.OpsPerSec
	}
	return harness.Median(v)
}

func medianCores(rs []harness.Round) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = (r.RedisCPUus + r.ClientCPUus) * r.OpsPerSec / 1e6
	}
	return harness.Median(v)
}
