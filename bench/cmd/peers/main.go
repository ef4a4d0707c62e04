// Command peers runs gatehouse against other rate limiters and session stores on a private
// redis-server it starts itself, in one interleaved run, and writes the figures as JSON, a
// Markdown table and an SVG chart. 'make bench-peers' runs it; -quick runs a short check.
//
//	go run ./cmd/peers                      # the full comparison, about 17 minutes
//	go run ./cmd/peers -experiment why      # what moves the ratio to redis_rate at 64 goroutines
//	go run ./cmd/peers -quick -only 'redis_rate|gatehouse-tb'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/bench/contenders"
	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/gatehouse/gatehouse/bench/report"
	"github.com/gatehouse/gatehouse/internal/redistest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	round, warmup     time.Duration
	rounds            int
	goroutines        []int
	sessionGoroutines []int
	keys, sessions    int
	pool              int
	clients           string
	pattern           string
	limits            string
	only              *regexp.Regexp
	experiment        string
	out               string
	note              string
	memoryProbe       int
	redraw            string
	doc               string
}

func parse(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.DurationVar(&o.round, "round", 2*time.Second, "measured time of each round")
	fs.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured time before each round's measurement")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds per contender and concurrency, interleaved in rotating order")
	gor := fs.String("goroutines", "1,16,64,256", "limiter concurrency levels")
	sgor := fs.String("session-goroutines", "16", "session concurrency levels")
	fs.IntVar(&o.keys, "keys", 10000, "identifiers the limiters decide on")
	fs.IntVar(&o.sessions, "sessions", 1000, "sessions each session store serves")
	fs.IntVar(&o.pool, "pool", 128, "connections of the go-redis client (and of libraries with their own client)")
	fs.StringVar(&o.clients, "clients", "shared", "shared: one client for all contenders; separate: one each")
	fs.StringVar(&o.pattern, "pattern", string(harness.Random), "how workers pick identifiers: random or lockstep")
	fs.StringVar(&o.limits, "limits", string(harness.Persistent), "persistent (state stays in Redis) or huge-rate (2^30/s)")
	only := fs.String("only", "", "run only contenders whose ID matches this regular expression")
	fs.StringVar(&o.experiment, "experiment", "peers", "peers: every contender; why: what moves the ratio to redis_rate")
	fs.StringVar(&o.out, "out", "results", "directory for <experiment>.json, .md and .svg")
	fs.StringVar(&o.note, "note", "", "a note on the machine, written with the figures")
	fs.IntVar(&o.memoryProbe, "memory-probe", 100, "identifiers whose state MEMORY USAGE measures")
	fs.StringVar(&o.doc, "doc", "", "also put the tables in this Markdown file, between <!-- bench:EXPERIMENT --> and <!-- /bench:EXPERIMENT -->")
	fs.StringVar(&o.redraw, "redraw", "", "draw the .md and .svg again from this .json, beside it; run nothing")
	quick := fs.Bool("quick", false, "a short run for tests: 2 rounds of 100ms, 1 and 8 goroutines, 1000 keys, 50 sessions")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.goroutines, err = ints(*gor); err != nil {
		return nil, fmt.Errorf("-goroutines: %w", err)
	}
	if o.sessionGoroutines, err = ints(*sgor); err != nil {
		return nil, fmt.Errorf("-session-goroutines: %w", err)
	}
	if *quick {
		o.round, o.warmup, o.rounds = 100*time.Millisecond, 30*time.Millisecond, 2
		o.goroutines, o.sessionGoroutines = []int{1, 8}, []int{8}
		o.keys, o.sessions, o.memoryProbe = 1000, 50, 10
	}
	if *only != "" {
		if o.only, err = regexp.Compile(*only); err != nil {
			return nil, fmt.Errorf("-only: %w", err)
		}
	}
	switch {
	case o.rounds < 1, o.round <= 0, o.warmup < 0:
		return nil, errors.New("need -rounds >= 1, -round > 0 and -warmup >= 0")
	case o.keys < 1, o.sessions < 1, o.pool < 1:
		return nil, errors.New("need -keys, -sessions and -pool of at least 1")
	case o.clients != "shared" && o.clients != "separate":
		return nil, fmt.Errorf("-clients %q: shared or separate", o.clients)
	case o.pattern != string(harness.Random) && o.pattern != string(harness.Lockstep):
		return nil, fmt.Errorf("-pattern %q: random or lockstep", o.pattern)
	case o.limits != string(harness.Persistent) && o.limits != string(harness.HugeRate):
		return nil, fmt.Errorf("-limits %q: persistent or huge-rate", o.limits)
	case o.experiment != "peers" && o.experiment != "why":
		return nil, fmt.Errorf("-experiment %q: peers or why", o.experiment)
	}
	return o, nil
}

func ints(s string) ([]int, error) {
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a list of positive integers", s)
		}
		v = append(v, n)
	}
	return v, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if o.redraw != "" {
		return redraw(o.redraw, o.doc)
	}
	srv, err := redistest.StartServer()
	if err != nil {
		return err
	}
	defer srv.Close()

	var entries []harness.Entry
	if o.experiment == "why" {
		entries = whyEntries(o)
	} else {
		entries = peerEntries(o)
	}
	if o.only != nil {
		kept := entries[:0]
		for _, e := range entries {
			if o.only.MatchString(e.Contender.ID) {
				kept = append(kept, e)
			}
		}
		entries = kept
	}
	if len(entries) == 0 {
		return errors.New("no contender to run")
	}
	rep, err := harness.Run(ctx, harness.Config{
		Addr: srv.Addr, Round: o.round, Warmup: o.warmup, Rounds: o.rounds,
		Goroutines: o.goroutines, MemoryProbe: o.memoryProbe, Entries: entries, Log: stderr,
	})
	if err != nil {
		return err
	}
	rep.Settings = harness.Settings{
		RoundSeconds: o.round.Seconds(), WarmupSeconds: o.warmup.Seconds(), Rounds: o.rounds,
		Goroutines: o.goroutines, SessionGoroutines: o.sessionGoroutines, Keys: o.keys, Sessions: o.sessions,
		PoolSize: o.pool, Clients: o.clients, KeyPattern: o.pattern, Limits: o.limits, Experiment: o.experiment,
	}
	rep.NotBuilt = contenders.NotBuilt()
	rep.Machine.Note = o.note
	rep.Machine.Gatehouse = gitDescribe()
	return write(rep, o.out, o.experiment, o.doc)
}

// peerEntries are every contender under the run's settings.
func peerEntries(o *options) []harness.Entry {
	v := harness.Variant{
		PoolSize: o.pool, Separate: o.clients == "separate", Keys: o.keys,
		Pattern: harness.KeyPattern(o.pattern), Limits: harness.LimitMode(o.limits),
	}
	sv := v
	sv.Keys, sv.Goroutines = o.sessions, o.sessionGoroutines
	var entries []harness.Entry
	for _, c := range contenders.Limiters() {
		entries = append(entries, harness.Entry{Contender: c, Variant: v})
	}
	for _, c := range contenders.Sessions() {
		entries = append(entries, harness.Entry{Contender: c, Variant: sv})
	}
	return entries
}

// write saves the report as <name>.json, and the table and chart drawn from it.
func write(rep *harness.Report, dir, name, doc string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return draw(rep, dir, name, doc)
}

// redraw reads a report saved as JSON and writes its table and chart beside it.
func redraw(path, doc string) error {
	js, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep harness.Report
	if err := json.Unmarshal(js, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return draw(&rep, filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), ".json"), doc)
}

// draw writes <name>.md and <name>.svg, and the tables into doc between its <!-- bench:name -->
// markers when doc is set.
func draw(rep *harness.Report, dir, name, doc string) error {
	svg, err := report.SVG(rep)
	if err != nil {
		return err
	}
	md := report.Markdown(rep)
	for _, f := range []struct {
		ext  string
		data []byte
	}{
		{".md", []byte(md)},
		{".svg", svg},
	} {
		if err := os.WriteFile(filepath.Join(dir, name+f.ext), f.data, 0o644); err != nil {
			return err
		}
	}
	if doc == "" {
		return nil
	}
	return updateDoc(doc, name, md)
}

// updateDoc replaces what lies between the lines <!-- bench:name --> and <!-- /bench:name --> in
// the Markdown file doc with md.
func updateDoc(doc, name, md string) error {
	b, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	begin, end := "<!-- bench:"+name+" -->\n", "<!-- /bench:"+name+" -->"
	s := string(b)
	i := strings.Index(s, begin)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q markers", doc, strings.TrimSpace(begin), end)
	}
	s = s[:i+len(begin)] + md + s[j:]
	return os.WriteFile(doc, []byte(s), 0o644)
}

// gitDescribe names the gatehouse commit measured, when the tree is a git checkout.
func gitDescribe() string {
	out, err := exec.Command("git", "-C", "..", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(this tree)"
	}
	return strings.TrimSpace(string(out))
}
