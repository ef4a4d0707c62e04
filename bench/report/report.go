// Package report draws a harness run as Markdown tables and an SVG chart, from the Report alone,
// so that both can be redrawn from a saved JSON file.
package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/bench/harness"
)

// Baselines are the contenders ratios are taken against: redis_rate for limiters, scs with the
// same touch on read as gatehouse for sessions; floors are the bare EVALSHA for latency ratios.
const (
	LimiterBaseline = "redis_rate"
	SessionBaseline = "scs-idle"
	Floor           = "evalsha"
)

// group is the results run interleaved together: one variant, one kind, one concurrency.
type group struct {
	variant string
	kind    harness.Kind
	g       int
	rows    []row
}

// row is one contender's result in a group.
type row struct {
	info *harness.ContenderInfo
	res  *harness.Result
}

func (gr *group) title() string {
	what := "Rate limiters"
	if gr.kind == harness.Session {
		what = "Sessions"
	}
	s := fmt.Sprintf("%s, %d goroutine", what, gr.g)
	if gr.g != 1 {
		s += "s"
	}
	if gr.variant != "" {
		s += " (" + gr.variant + ")"
	}
	return s
}

func (gr *group) unit() string {
	if gr.kind == harness.Session {
		return "requests/s"
	}
	return "decisions/s"
}

func (gr *group) baselineID() string {
	if gr.kind == harness.Session {
		return SessionBaseline
	}
	return LimiterBaseline
}

// find returns the row of a contender (by its contender ID, without the variant), or nil.
func (gr *group) find(contender string) *row {
	for i := range gr.rows {
		if gr.rows[i].info.Contender == contender {
			return &gr.rows[i]
		}
	}
	return nil
}

// ratio returns ops/s over the baseline's in the same group, or 0 when there is no baseline.
func (gr *group) ratio(r row) float64 {
	b := gr.find(gr.baselineID())
	if b == nil || b.res.OpsPerSec == 0 {
		return 0
	}
	return r.res.OpsPerSec / b.res.OpsPerSec
}

// groups sorts a report's results into groups: variants in the order their contenders appear,
// limiters before sessions, concurrency ascending, rows in the report's contender order.
func groups(rep *harness.Report) []*group {
	variantOrder := map[string]int{}
	contenderOrder := map[string]int{}
	for i, c := range rep.Contenders {
		if _, ok := variantOrder[c.Variant]; !ok {
			variantOrder[c.Variant] = len(variantOrder)
		}
		contenderOrder[c.ID] = i
	}
	type key struct {
		variant string
		kind    harness.Kind
		g       int
	}
	byKey := map[key]*group{}
	var gs []*group
	for i := range rep.Results {
		res := &rep.Results[i]
		info := rep.Contender(res.ID)
		if info == nil {
			continue
		}
		k := key{info.Variant, info.Kind, res.Goroutines}
		gr, ok := byKey[k]
		if !ok {
			gr = &group{variant: k.variant, kind: k.kind, g: k.g}
			byKey[k] = gr
			gs = append(gs, gr)
		}
		gr.rows = append(gr.rows, row{info: info, res: res})
	}
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.variant != b.variant {
			return variantOrder[a.variant] < variantOrder[b.variant]
		}
		if a.kind != b.kind {
			return a.kind == harness.Limiter
		}
		return a.g < b.g
	})
	for _, gr := range gs {
		sort.SliceStable(gr.rows, func(i, j int) bool {
			return contenderOrder[gr.rows[i].info.ID] < contenderOrder[gr.rows[j].info.ID]
		})
	}
	return gs
}

// machineLine describes the machine in one sentence.
func machineLine(rep *harness.Report) string {
	s := machineWords(rep)
	if l := loadWords(rep); l != "" {
		s += "; " + l
	}
	return s
}

func machineWords(rep *harness.Report) string {
	m := rep.Machine
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, %s, Redis %s on loopback, go-redis %s, gatehouse %s",
		m.CPU, m.Cores, m.GOMAXPROCS, m.OS, m.Go, m.Redis, m.GoRedis, m.Gatehouse)
}

// loadWords gives the load average and the note on the machine, or "".
func loadWords(rep *harness.Report) string {
	m := rep.Machine
	var parts []string
	if m.LoadAvgStart != "" {
		parts = append(parts, fmt.Sprintf("load average %s at the start, %s at the end", m.LoadAvgStart, m.LoadAvgEnd))
	}
	if m.Note != "" {
		parts = append(parts, m.Note)
	}
	return strings.Join(parts, "; ")
}

// runLine describes the run's settings in one sentence.
func runLine(rep *harness.Report) string {
	st := rep.Settings
	clients := fmt.Sprintf("one go-redis client with PoolSize %d shared by all", st.PoolSize)
	if st.Clients == "separate" {
		clients = fmt.Sprintf("a go-redis client with PoolSize %d for each contender", st.PoolSize)
	}
	s := fmt.Sprintf("%s UTC; %d interleaved rounds of %gs (after %gs of warm-up) per contender and concurrency, "+
		"in rotating order, median reported; %d identifiers picked %s, %s limits never reached; ",
		rep.Started.Format("2006-01-02 15:04"), st.Rounds, st.RoundSeconds, st.WarmupSeconds,
		st.Keys, patternWords(st.KeyPattern), st.Limits)
	for _, c := range rep.Contenders {
		if c.Kind == harness.Session {
			s += fmt.Sprintf("%d sessions of 1.5 KB, 9 reads to 1 write; ", st.Sessions)
			break
		}
	}
	s += clients
	if len(variantNames(groups(rep))) > 1 {
		s += "; the variants below change some of these"
	}
	return s
}

func patternWords(p string) string {
	if p == string(harness.Lockstep) {
		return "in lockstep by every goroutine"
	}
	return "at random"
}

// kilo formats an operation rate: 51234 as "51.2k".
func kilo(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func ratioText(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// spread is the range of a result's rounds as a share of its median.
func spread(r *harness.Result) string {
	if r.OpsPerSec == 0 || r.OpsMax == 0 {
		return "–"
	}
	return fmt.Sprintf("±%.0f%%", 50*(r.OpsMax-r.OpsMin)/r.OpsPerSec)
}

// cell escapes a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
