package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/bench/harness"
)

// Markdown returns the report as Markdown: the machine and the settings, a table per group of
// results, a summary across variants when there are several, the state each contender keeps in
// Redis, and what was left out.
func Markdown(rep *harness.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s.\n\nRun: %s.\n\n", machineLine(rep), runLine(rep))
	b.WriteString("Per operation: allocations (runtime.MemStats.Mallocs), Redis CPU (INFO CPU used_cpu_user + " +
		"used_cpu_sys), client CPU (getrusage of the process), bytes on the wire (INFO stats total_net_input_bytes + " +
		"total_net_output_bytes) and commands (total_commands_processed), each a delta over the measured window ÷ " +
		"operations; commands include those a script runs; reads are the server's socket reads (about one per " +
		"round trip, so 1/reads is about the operations one pipeline carried). Cores busy is (Redis + client CPU " +
		"per operation) × operations per second; others' cores is the CPU the rest of the machine used meanwhile " +
		"(/proc/stat less the client's and the server's). Latency is each operation's, from the client side. ± is half the range of the " +
		"rounds' rates.\n\n")

	gs := groups(rep)
	if variants := variantNames(gs); len(variants) > 1 {
		summary(&b, gs, variants)
		loadTable(&b, rep)
	}
	for _, gr := range gs {
		table(&b, gr)
	}
	memoryTable(&b, rep)
	if len(rep.Failed) > 0 || len(rep.NotBuilt) > 0 {
		b.WriteString("### Left out\n\n")
		for _, f := range append(append([]harness.Failure(nil), rep.Failed...), rep.NotBuilt...) {
			fmt.Fprintf(&b, "- %s: %s\n", f.Name, f.Reason)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func variantNames(gs []*group) []string {
	var v []string
	seen := map[string]bool{}
	for _, gr := range gs {
		if !seen[gr.variant] {
			seen[gr.variant] = true
			v = append(v, gr.variant)
		}
	}
	return v
}

// summary is one line per variant: each contender's rate and ratio to the baseline.
func summary(b *strings.Builder, gs []*group, variants []string) {
	var ids []string
	seen := map[string]bool{}
	for _, gr := range gs {
		for _, r := range gr.rows {
			if !seen[r.info.Contender] {
				seen[r.info.Contender] = true
				ids = append(ids, r.info.Contender)
			}
		}
	}
	b.WriteString("### Variants side by side\n\n| variant | goroutines |")
	for _, id := range ids {
		fmt.Fprintf(b, " %s |", cell(id))
	}
	b.WriteString("\n|---|---|")
	b.WriteString(strings.Repeat("---|", len(ids)))
	b.WriteString("\n")
	for _, gr := range gs {
		fmt.Fprintf(b, "| %s | %d |", cell(gr.variant), gr.g)
		for _, id := range ids {
			r := gr.find(id)
			if r == nil {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %s (%s) |", kilo(r.res.OpsPerSec), ratioText(gr.ratio(*r)))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func table(b *strings.Builder, gr *group) {
	fmt.Fprintf(b, "### %s\n\n", gr.title())
	floor := gr.find(Floor)
	withFloor := gr.kind == harness.Limiter && gr.g == 1 && floor != nil && floor.res.P50us > 0
	fmt.Fprintf(b, "| contender | %s | × %s | ± | p50 µs |", gr.unit(), gr.baselineID())
	if withFloor {
		b.WriteString(" p50 ÷ floor |")
	}
	b.WriteString(" p99 µs | allocs | Redis µs | client µs | cores busy | wire bytes | commands | reads | others' cores | errors |\n|---|---|---|---|---|")
	if withFloor {
		b.WriteString("---|")
	}
	b.WriteString("---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range gr.rows {
		res := r.res
		name := r.info.Name
		if r.info.Gatehouse {
			name = "**" + name + "**"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %.0f |", cell(name), kilo(res.OpsPerSec), ratioText(gr.ratio(r)), spread(res), res.P50us)
		if withFloor {
			fmt.Fprintf(b, " %.2f |", res.P50us/floor.res.P50us)
		}
		fmt.Fprintf(b, " %.0f | %.1f | %.1f | %.1f | %.2f | %.0f | %.2f | %.3f | %.2f | %s |\n",
			res.P99us, res.AllocsPerOp, res.RedisCPUus, res.ClientCPUus, coresBusy(res), res.WireBytesPerOp,
			res.CommandsPerOp, res.ReadsPerOp, res.OtherCores, errorsText(res))
	}
	b.WriteString("\n")
}

// coresBusy is the CPU the server and the client spent per second of the run, in cores: what is
// left of the machine's cores shows whether a contender was bound by CPU or by waiting.
func coresBusy(r *harness.Result) float64 {
	return (r.RedisCPUus + r.ClientCPUus) * r.OpsPerSec / 1e6
}

func errorsText(r *harness.Result) string {
	if r.Errors == 0 {
		return "0"
	}
	msg := r.FirstError
	if len(msg) > 80 {
		msg = msg[:80] + "…"
	}
	return fmt.Sprintf("%d (%s)", r.Errors, cell(msg))
}

// memoryTable lists each contender once (its first variant): the state it keeps and its pool.
func memoryTable(b *strings.Builder, rep *harness.Report) {
	b.WriteString("### State in Redis, versions and connections\n\n" +
		"Memory is MEMORY USAGE summed over the keys one identifier leaves after five decisions " +
		"(for sessions: one session after its creation and five requests).\n\n" +
		"| contender | bytes per identifier | keys | versions | connections | notes |\n|---|---|---|---|---|---|\n")
	seen := map[string]bool{}
	for _, c := range rep.Contenders {
		if seen[c.Contender] {
			continue
		}
		seen[c.Contender] = true
		var vs []string
		for mod, v := range c.Versions {
			vs = append(vs, mod+" "+v)
		}
		sort.Strings(vs)
		fmt.Fprintf(b, "| %s | %.0f | %.2f | %s | %s | %s |\n",
			cell(c.Name), c.MemoryPerID, c.KeysPerID, cell(strings.Join(vs, ", ")), cell(c.Pool), cell(c.Notes))
	}
	b.WriteString("\n")
}
