package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/bench/contenders"
	"github.com/gatehouse/gatehouse/bench/harness"
)

// TestQuickRun runs the whole comparison in its quick mode against a private redis-server and
// checks that what it writes is complete and well-formed: every contender set up and measured at
// every concurrency with no failed operation, figures that a real measurement gives, the state
// each keeps in Redis, valid JSON, a table naming each, and an SVG that parses as XML.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server; not in -short")
	}
	dir := t.TempDir()
	var log bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-out", dir, "-note", "test run"}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}

	js, err := os.ReadFile(filepath.Join(dir, "peers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep harness.Report
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("peers.json is not a report: %v", err)
	}
	m := rep.Machine
	if m.CPU == "" || m.Cores < 1 || !strings.HasPrefix(m.Go, "go") || m.Redis == "" || !strings.HasPrefix(m.GoRedis, "v9.") || m.Note != "test run" {
		t.Errorf("machine = %+v, want CPU, cores, Go, Redis and go-redis versions and the note", m)
	}
	if rep.Started.IsZero() || rep.Finished.Before(rep.Started) {
		t.Errorf("started %v, finished %v", rep.Started, rep.Finished)
	}
	if len(rep.Failed) > 0 {
		t.Errorf("contenders left out: %+v", rep.Failed)
	}

	md, err := os.ReadFile(filepath.Join(dir, "peers.md"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(cs []harness.Contender, levels []int) {
		for _, c := range cs {
			info := rep.Contender(c.ID)
			if info == nil {
				t.Errorf("%s: not in the report", c.ID)
				continue
			}
			if !strings.Contains(string(md), c.Name) {
				t.Errorf("%s: %q not in peers.md", c.ID, c.Name)
			}
			// The floors that touch no key leave no state; the coalesced one sends a call for
			// many decisions, less than one command each.
			keyless := strings.HasPrefix(c.ID, "evalsha") || c.ID == "floor-coalesced-none"
			minCommands := 1.0
			if c.ID == "floor-coalesced-none" {
				minCommands = 0
			}
			if !keyless && (info.MemoryPerID <= 0 || info.KeysPerID <= 0) {
				t.Errorf("%s: %.0f bytes in %.2f keys per identifier, want some state", c.ID, info.MemoryPerID, info.KeysPerID)
			}
			for _, g := range levels {
				r := rep.Result(c.ID, g)
				if r == nil {
					t.Errorf("%s at %d goroutines: no result", c.ID, g)
					continue
				}
				if r.Errors != 0 {
					t.Errorf("%s at %d goroutines: %d failed operations, first %s", c.ID, g, r.Errors, r.FirstError)
				}
				if len(r.Rounds) != 2 {
					t.Errorf("%s at %d goroutines: %d rounds, want 2", c.ID, g, len(r.Rounds))
				}
				if r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.AllocsPerOp <= 0 ||
					r.RedisCPUus <= 0 || r.ClientCPUus <= 0 || r.WireBytesPerOp <= 0 || r.CommandsPerOp <= 0 || r.CommandsPerOp < minCommands {
					t.Errorf("%s at %d goroutines: implausible figures %+v", c.ID, g, *r)
				}
			}
		}
	}
	check(contenders.Limiters(), []int{1, 8})
	check(contenders.Sessions(), []int{8})

	svg, err := os.ReadFile(filepath.Join(dir, "peers.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil {
		t.Errorf("peers.svg: %v", err)
	}
}

// wellFormed parses b as XML to its end and checks that its root is an svg element.
func wellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		return errors.New("root element is " + root + ", want svg")
	}
	return nil
}

// TestQuickWhy runs the "why" experiment in its quick mode for two contenders and checks that
// every variant was measured.
func TestQuickWhy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server; not in -short")
	}
	dir := t.TempDir()
	var log bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-experiment", "why", "-only", "^(redis_rate|gatehouse-tb-auto)$", "-out", dir}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	js, err := os.ReadFile(filepath.Join(dir, "why.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep harness.Report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	o, _ := parse([]string{"-quick"}, io.Discard)
	variants := map[string]bool{}
	for _, e := range whyEntries(o) {
		variants[e.Variant.Name] = true
	}
	if len(variants) < 5 {
		t.Fatalf("only %d variants", len(variants))
	}
	for v := range variants {
		for _, id := range []string{"redis_rate", "gatehouse-tb-auto"} {
			r := rep.Result(id+"@"+v, 64)
			if r == nil || r.OpsPerSec <= 0 || r.Errors != 0 {
				t.Errorf("%s@%s at 64 goroutines: %+v", id, v, r)
			}
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "why.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "### Variants side by side") {
		t.Error("why.md has no summary of the variants")
	}
}

// TestRedraw draws the table and chart again from a saved report, without a server.
func TestRedraw(t *testing.T) {
	dir := t.TempDir()
	js, err := os.ReadFile("../../report/testdata/fixed.json")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "saved.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-redraw", path}, io.Discard); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "saved.md"))
	if err != nil || !strings.Contains(string(md), "gatehouse token bucket") {
		t.Errorf("saved.md: %v\n%s", err, md)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "saved.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg); err != nil {
		t.Errorf("saved.svg: %v", err)
	}
	if err := run(context.Background(), []string{"-redraw", filepath.Join(dir, "missing.json")}, io.Discard); err == nil {
		t.Error("redraw of a missing file: nil error")
	}
}

func TestUpdateDoc(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "doc.md")
	before := "# Title\n\ntext\n<!-- bench:peers -->\nold table\n<!-- /bench:peers -->\nafter\n"
	if err := os.WriteFile(doc, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateDoc(doc, "peers", "new table\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(doc)
	want := "# Title\n\ntext\n<!-- bench:peers -->\nnew table\n<!-- /bench:peers -->\nafter\n"
	if string(got) != want {
		t.Errorf("after updateDoc:\n%s\nwant\n%s", got, want)
	}
	if err := updateDoc(doc, "why", "x"); err == nil {
		t.Error("updateDoc without the markers: nil error")
	}
}

func TestParseRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"},
		{"-goroutines", "1,x"},
		{"-goroutines", "0"},
		{"-clients", "many"},
		{"-pattern", "zigzag"},
		{"-limits", "none"},
		{"-experiment", "other"},
		{"-only", "("},
		{"stray"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("parse(%q) = nil error, want one", args)
		}
	}
	o, err := parse([]string{"-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 2 || len(o.goroutines) != 2 || o.keys != 1000 {
		t.Errorf("-quick gave %+v", o)
	}
}
