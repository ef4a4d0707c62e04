package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/bench/harness"
)

func fixed(t *testing.T) *harness.Report {
	t.Helper()
	b, err := os.ReadFile("testdata/fixed.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep harness.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// svgBar is a bar of the chart, read back from the SVG.
type svgBar struct {
	width float64
	fill  string
	title string
}

// parseSVG parses the chart as XML to its end and returns its bars (rects with a title) and texts.
func parseSVG(t *testing.T, b []byte) (bars []svgBar, texts []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var stack []string
	var cur *svgBar
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && tok.Name.Local != "svg" {
				t.Fatalf("root element %q, want svg", tok.Name.Local)
			}
			stack = append(stack, tok.Name.Local)
			if tok.Name.Local == "rect" {
				bar := svgBar{}
				for _, a := range tok.Attr {
					switch a.Name.Local {
					case "width":
						bar.width, _ = strconv.ParseFloat(a.Value, 64)
					case "fill":
						bar.fill = a.Value
					}
				}
				bars = append(bars, bar)
				cur = &bars[len(bars)-1]
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if tok.Name.Local == "rect" {
				cur = nil
			}
		case xml.CharData:
			switch {
			case len(stack) > 0 && stack[len(stack)-1] == "title" && cur != nil:
				cur.title = string(tok)
			case len(stack) > 0 && stack[len(stack)-1] == "text":
				texts = append(texts, string(tok))
			}
		}
	}
	var withTitle []svgBar
	for _, b := range bars {
		if b.title != "" {
			withTitle = append(withTitle, b)
		}
	}
	return withTitle, texts
}

func TestSVGFromFixedReport(t *testing.T) {
	svg, err := SVG(fixed(t))
	if err != nil {
		t.Fatal(err)
	}
	bars, texts := parseSVG(t, svg)
	if len(bars) != 7 {
		t.Fatalf("%d bars, want one per result (7)", len(bars))
	}
	byTitle := map[string]svgBar{}
	for _, b := range bars {
		byTitle[b.title] = b
	}
	// Panels in order: 1 goroutine, 64 goroutines, sessions; each scaled to its largest bar.
	for _, c := range []struct {
		title string
		width float64
		fill  string
	}{
		{"EVALSHA floor: 20000/s", barMax, colourFloor},
		{"redis_rate: 10000/s", barMax / 2, colourBaseline},
		{"gatehouse token bucket: 15000/s", barMax * 3 / 4, colourGatehouse},
		{"redis_rate: 50000/s", barMax / 2, colourBaseline},
		{"gatehouse token bucket: 100000/s", barMax, colourGatehouse},
		{"scs with touch: 10000/s", barMax * 2 / 3, colourBaseline},
		{"gatehouse sessions: 15000/s", barMax, colourGatehouse},
	} {
		b, ok := byTitle[c.title]
		if !ok {
			t.Errorf("no bar titled %q", c.title)
			continue
		}
		if b.width < c.width-0.1 || b.width > c.width+0.1 || b.fill != c.fill {
			t.Errorf("bar %q: width %.1f fill %s, want %.1f %s", c.title, b.width, b.fill, c.width, c.fill)
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{
		"Rate limiters, 1 goroutine — decisions/s", "Rate limiters, 64 goroutines — decisions/s",
		"Sessions, 16 goroutines — requests/s",
		"20.0k (2.00×)", "10.0k (1.00×)", "15.0k (1.50×)", "100.0k (2.00×)", "15.0k (1.50×)",
		"Test CPU, 2 cores", "fixed <test> & data", "median of 3 interleaved rounds of 2s",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("chart text lacks %q", want)
		}
	}
}

func TestSVGNeedsResults(t *testing.T) {
	rep := fixed(t)
	rep.Results = nil
	if _, err := SVG(rep); err == nil {
		t.Error("SVG of a report without results: nil error")
	}
}

func TestMarkdownFromFixedReport(t *testing.T) {
	md := Markdown(fixed(t))
	for _, want := range []string{
		"Machine: Test CPU, 2 cores (GOMAXPROCS 2), linux/amd64, go1.26.8, Redis 7.0.15 on loopback, go-redis v9.23.0, gatehouse abc1234",
		"3 interleaved rounds of 2s",
		"### Rate limiters, 1 goroutine",
		"| contender | decisions/s | × redis_rate | ± | p50 µs | p50 ÷ floor |",
		"| redis_rate | 10.0k | 1.00× | ±10% | 100 | 2.00 | 200 | 21.0 | 40.0 | 50.0 | 0.90 | 176 | 4.00 | 0.000 | 0.00 | 0 |",
		"| **gatehouse token bucket** | 15.0k | 1.50× | ±0% | 75 | 1.50 |",
		"### Rate limiters, 64 goroutines",
		"| **gatehouse token bucket** | 100.0k | 2.00× | ±0% | 600 | 1500 | 12.0 | 8.0 | 9.0 | 1.70 | 195 | 4.00 | 0.000 | 0.00 | 3 (boom \\| bang) |",
		"### Sessions, 16 goroutines",
		"| **gatehouse sessions** | 15.0k | 1.50× |",
		"| gatehouse token bucket | 88 | 1.00 |  | shared \\| piped |",
		"- some/limiter: does not build",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if strings.Contains(md, "Variants side by side") {
		t.Error("a report of one variant has a variant summary")
	}
}

func TestMarkdownSummarizesVariants(t *testing.T) {
	rep := fixed(t)
	// The same two limiters again under a second variant, at 64 goroutines.
	for _, id := range []string{"redis_rate", "gatehouse-tb"} {
		c := *rep.Contender(id)
		c.ID, c.Variant = id+"@pool-64", "pool-64"
		rep.Contenders = append(rep.Contenders, c)
		r := *rep.Result(id, 64)
		r.ID = c.ID
		r.OpsPerSec *= 2
		if id == "redis_rate" {
			r.OpsPerSec *= 2
		}
		rep.Results = append(rep.Results, r)
	}
	md := Markdown(rep)
	for _, want := range []string{
		"### Variants side by side",
		"| variant | goroutines | evalsha | redis_rate | gatehouse-tb | scs-idle | gatehouse-session |",
		"|  | 64 | – | 50.0k (1.00×) | 100.0k (2.00×) | – | – |",
		"| pool-64 | 64 | – | 200.0k (1.00×) | 200.0k (1.00×) | – | – |",
		"### Rate limiters, 64 goroutines (pool-64)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

func TestKilo(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{999, "999"}, {1000, "1.0k"}, {51234, "51.2k"}, {2.5e6, "2.50M"}} {
		if got := kilo(c.v); got != c.want {
			t.Errorf("kilo(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestLoadTableSortsRoundsByOthersLoad(t *testing.T) {
	round := func(ops, others float64) harness.Round {
		return harness.Round{Figures: harness.Figures{OpsPerSec: ops, RedisCPUus: 10, ClientCPUus: 10, OtherCores: others}}
	}
	persistent := harness.VariantSettings{Limits: string(harness.Persistent)}
	rep := &harness.Report{
		Contenders: []harness.ContenderInfo{
			{ID: "redis_rate@a", Contender: "redis_rate", Kind: harness.Limiter, Variant: "a", Settings: persistent},
			{ID: "auto@a", Contender: "auto", Kind: harness.Limiter, Variant: "a", Settings: persistent},
			{ID: "redis_rate@b", Contender: "redis_rate", Kind: harness.Limiter, Variant: "b", Settings: persistent},
			{ID: "auto@b", Contender: "auto", Kind: harness.Limiter, Variant: "b", Settings: persistent},
			// Another workload: left out of the table.
			{ID: "auto@huge", Contender: "auto", Kind: harness.Limiter, Variant: "huge", Settings: harness.VariantSettings{Limits: string(harness.HugeRate)}},
		},
		Results: []harness.Result{
			{ID: "redis_rate@a", Goroutines: 64, Rounds: []harness.Round{round(40000, 0.1), round(20000, 1.0)}},
			{ID: "auto@a", Goroutines: 64, Rounds: []harness.Round{round(60000, 0.2), round(60000, 0.9)}},
			{ID: "redis_rate@b", Goroutines: 64, Rounds: []harness.Round{round(44000, 0.0)}},
			{ID: "auto@b", Goroutines: 64, Rounds: []harness.Round{round(62000, 1.6)}},
			{ID: "auto@huge", Goroutines: 64, Rounds: []harness.Round{round(1e6, 0.5)}},
		},
	}
	var b strings.Builder
	loadTable(&b, rep)
	md := b.String()
	for _, want := range []string{
		"| others' cores (64 goroutines) | redis_rate | auto |",
		"| 0.0–0.3 | 42.0k (1.00×), 0.84 cores, n=2 | 60.0k (1.43×), 1.20 cores, n=1 |",
		"| 0.7–1.1 | 20.0k (1.00×), 0.40 cores, n=1 | 60.0k (3.00×), 1.20 cores, n=1 |",
		"| ≥ 1.5 | – | 62.0k, 1.24 cores, n=1 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("load table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "0.3–0.7") || strings.Contains(md, "1000.0k") {
		t.Errorf("load table has a range with no round, or another workload's round:\n%s", md)
	}
}
