package report

import (
	"bytes"
	"errors"
	"fmt"
	"html"

	"github.com/gatehouse/gatehouse/bench/harness"
)

// Chart geometry, in pixels.
const (
	chartWidth = 980
	labelWidth = 400 // contender names, right-aligned before the bars
	barLeft    = labelWidth + 10
	barMax     = 420 // the longest bar of a panel; its value and ratio are written after it
	barHeight  = 14
	rowHeight  = 19
	panelGap   = 18
	headHeight = 72
)

// Colours: gatehouse, the baseline the ratios are against, the floors, and the other peers.
const (
	colourGatehouse = "#2563eb"
	colourBaseline  = "#d97706"
	colourFloor     = "#cbd5e1"
	colourPeer      = "#6b7280"
)

// SVG draws the report as horizontal bar charts, one panel per group of results (a variant, a
// kind, a concurrency): operations per second per contender, each labelled with its rate and its
// ratio to the baseline, whose rate is also marked by a dashed line across the panel.
func SVG(rep *harness.Report) ([]byte, error) {
	gs := groups(rep)
	if len(gs) == 0 {
		return nil, errors.New("report: no results to draw")
	}
	height := headHeight
	for _, gr := range gs {
		height += panelHeight(gr) + panelGap
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	text(&b, 10, 20, "start", `font-size="15" font-weight="bold"`, "gatehouse and its peers on one Redis, one run ("+
		rep.Started.Format("2006-01-02")+")")
	text(&b, 10, 37, "start", `fill="#374151"`, machineWords(rep))
	text(&b, 10, 51, "start", `fill="#374151"`, loadWords(rep))
	text(&b, 10, 65, "start", `fill="#374151"`, fmt.Sprintf(
		"median of %d interleaved rounds of %gs; bars: operations/s; labels: rate (ratio to %s, or %s for sessions)",
		rep.Settings.Rounds, rep.Settings.RoundSeconds, LimiterBaseline, SessionBaseline))

	y := headHeight
	for _, gr := range gs {
		panel(&b, gr, y)
		y += panelHeight(gr) + panelGap
	}
	b.WriteString("</svg>\n")
	return b.Bytes(), nil
}

func panelHeight(gr *group) int { return 22 + len(gr.rows)*rowHeight }

func panel(b *bytes.Buffer, gr *group, y int) {
	text(b, 10, y+14, "start", `font-size="13" font-weight="bold"`, gr.title()+" — "+gr.unit())
	top := y + 22
	var max float64
	for _, r := range gr.rows {
		if r.res.OpsPerSec > max {
			max = r.res.OpsPerSec
		}
	}
	if max == 0 {
		max = 1
	}
	scale := float64(barMax) / max
	for i, r := range gr.rows {
		ry := top + i*rowHeight
		colour := colourPeer
		switch {
		case r.info.Gatehouse:
			colour = colourGatehouse
		case r.info.Contender == gr.baselineID():
			colour = colourBaseline
		case r.info.Contender == Floor || r.info.Contender == Floor+"-auto":
			colour = colourFloor
		}
		text(b, labelWidth, ry+barHeight-3, "end", "", r.info.Name)
		w := r.res.OpsPerSec * scale
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			barLeft, ry, w, barHeight, colour, html.EscapeString(fmt.Sprintf("%s: %.0f/s", r.info.Name, r.res.OpsPerSec)))
		label := kilo(r.res.OpsPerSec)
		if ratio := gr.ratio(r); ratio > 0 {
			label += " (" + ratioText(ratio) + ")"
		}
		text(b, barLeft+int(w)+5, ry+barHeight-3, "start", "", label)
	}
	if base := gr.find(gr.baselineID()); base != nil {
		x := float64(barLeft) + base.res.OpsPerSec*scale
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="3,3"/>`+"\n",
			x, top-3, x, top+len(gr.rows)*rowHeight, colourBaseline)
	}
}

// text writes a text element; s is escaped.
func text(b *bytes.Buffer, x, y int, anchor, attrs, s string) {
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, attrs, html.EscapeString(s))
}
