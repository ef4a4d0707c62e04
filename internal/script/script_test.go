package script

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/redis/go-redis/v9"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 0x31C3}, // the CRC-16/XMODEM check value
		{"foo", 12182},
		{"{user1000}.following", Slot("user1000")},
		{"{user1000}.followers", Slot("user1000")},
		{"foo{}{bar}", Slot("foo{}{bar}")}, // empty tag: the whole key
		{"foo{{bar}}zap", Slot("{bar")},
		{"foo{bar}{zap}", Slot("bar")},
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestCheckSlots(t *testing.T) {
	if err := checkSlots([]string{"a{x}", "b{x}", "{x}"}); err != nil {
		t.Errorf("keys with one tag: %v", err)
	}
	err := checkSlots([]string{"a{x}", "secret-user-42{y}"})
	if !errors.Is(err, ErrCrossSlot) {
		t.Fatalf("keys with two tags: err = %v, want ErrCrossSlot", err)
	}
	if strings.Contains(err.Error(), "secret-user-42") {
		t.Errorf("error %q names a key", err)
	}
}

// replyError is an error Redis replied with, as go-redis reports one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// A Cluster's routes are reloaded after a call got no reply, not after Redis answered: an error
// reply, or a reply that is no array of integers (ErrBadReply); nor when the caller gave up.
func TestRefreshRoutes(t *testing.T) {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:0"}}) // never reached
	defer cc.Close()
	notInts := shapeErr(errors.New("redis: can't parse array/set/push reply: \"$1\""))
	if !errors.Is(notInts, ErrBadReply) {
		t.Fatalf("shapeErr of a parse error = %v, want ErrBadReply", notInts)
	}
	for _, tt := range []struct {
		err    error
		reload bool
	}{
		{nil, false},
		{replyError("ERR nope"), false},
		{notInts, false},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{context.DeadlineExceeded, true},
	} {
		if got := refreshRoutes(cc, tt.err); got != tt.reload {
			t.Errorf("refreshRoutes(%v) = %v, want %v", tt.err, got, tt.reload)
		}
	}
	if c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}); refreshRoutes(c, io.EOF) {
		t.Error("refreshRoutes of a client that is no Cluster reloaded something")
	}
}

// Each embedded script states its contract in a header, so it can be called from another language.
func TestScriptHeaders(t *testing.T) {
	all := Scripts()
	if len(all) == 0 {
		t.Fatal("no embedded scripts")
	}
	for _, s := range all {
		if got, ok := Lookup(s.Name()); !ok || got != s {
			t.Errorf("Lookup(%q) = %v, %v", s.Name(), got, ok)
		}
		if len(s.SHA1()) != 40 {
			t.Errorf("%s: SHA1 %q", s.Name(), s.SHA1())
		}
		head := s.Source()
		if i := strings.Index(head, "\n\n"); i > 0 {
			head = head[:i]
		}
		for _, want := range []string{"-- " + s.Name() + ".lua:", "-- KEYS", "-- ARGV", "-- Reply"} {
			if !strings.Contains(head, want) {
				t.Errorf("%s.lua: header lacks %q", s.Name(), want)
			}
		}
	}
}

// Every script composes, with no directive left, and its digest is taken over the composed text.
func TestComposeEveryScript(t *testing.T) {
	names, err := fs.Glob(files, "*.lua")
	if err != nil || len(names) == 0 {
		t.Fatalf("*.lua: %v, %d files", err, len(names))
	}
	if len(Scripts()) != len(names) {
		t.Errorf("%d scripts embedded, %d files in scripts/", len(Scripts()), len(names))
	}
	for _, s := range Scripts() {
		if strings.Contains(s.Source(), includeDirective) {
			t.Errorf("%s: composed source still has an include directive", s.Name())
		}
		sum := sha1.Sum([]byte(s.Source()))
		if s.SHA1() != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA1 %s is not that of the composed source", s.Name(), s.SHA1())
		}
		raw, err := fs.ReadFile(files, s.Name()+".lua")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), includeDirective) == (s.Source() == string(raw)) {
			t.Errorf("%s: composed source and file differ exactly when the file includes a part: %v", s.Name(), s.Source() == string(raw))
		}
	}
}

func TestCompose(t *testing.T) {
	fsys := fstest.MapFS{
		"lua/a.lua":        {Data: []byte("-- a\n--#include lib/x\n--#include lib/y\nreturn x + y\n")},
		"lua/lib/x.lua":    {Data: []byte("local x = 1")}, // no final newline
		"lua/lib/y.lua":    {Data: []byte("--#include lib/x\nlocal y = x\n")},
		"lua/twice.lua":    {Data: []byte("--#include lib/y\n--#include lib/x\n--#include lib/y\n")},
		"lua/unknown.lua":  {Data: []byte("--#include lib/nope\n")},
		"lua/empty.lua":    {Data: []byte("--#include \n")},
		"lua/escape.lua":   {Data: []byte("--#include ../secret\n")},
		"lua/cycle.lua":    {Data: []byte("--#include lib/c1\n")},
		"lua/lib/c1.lua":   {Data: []byte("--#include lib/c2\n")},
		"lua/lib/c2.lua":   {Data: []byte("--#include lib/c1\n")},
		"lua/indented.lua": {Data: []byte("  --#include lib/x\n")},
		"top.lua":          {Data: []byte("--#include ../lua/lib/x\n")},
	}
	for _, tt := range []struct{ file, want, err string }{
		{file: "lua/a.lua", want: "-- a\nlocal x = 1\nlocal y = x\nreturn x + y\n"},
		{file: "lua/twice.lua", want: "local x = 1\nlocal y = x\n"}, // each part once, where first named
		{file: "lua/indented.lua", want: "  --#include lib/x\n"},    // a directive starts its line
		{file: "lua/unknown.lua", err: "lib/nope.lua"},
		{file: "lua/empty.lua", err: "names no part"},
		{file: "lua/escape.lua", err: "names no part"},
		{file: "lua/cycle.lua", err: "cycle"},
		{file: "top.lua", err: "names no part"}, // a script at the root reaches no parent
	} {
		got, err := compose(fsys, tt.file)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: err = %v, want one about %q", tt.file, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s = %q, %v; want %q", tt.file, got, err, tt.want)
		}
	}
}

// No script, and no part, holds its own copy of what a part defines: no function a part defines
// is defined again elsewhere, no composed script defines a top-level name twice, and no three
// consecutive code lines of a part are written out again.
func TestNoInlineCopyOfAPart(t *testing.T) {
	parts, err := fs.Glob(files, "lib/*.lua")
	if err != nil || len(parts) == 0 {
		t.Fatalf("lib/*.lua: %v, %d parts", err, len(parts))
	}
	all, err := fs.Glob(files, "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, parts...)
	read := func(p string) string {
		b, err := fs.ReadFile(files, p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	definer := map[string]string{} // function name -> the part that defines it
	for _, p := range parts {
		for _, name := range luaFunctions(read(p)) {
			if other, ok := definer[name]; ok {
				t.Errorf("%s and %s both define %s", p, other, name)
			}
			definer[name] = p
		}
	}
	for _, f := range all {
		src := read(f)
		for _, name := range luaFunctions(src) {
			if p := definer[name]; p != "" && p != f {
				t.Errorf("%s defines function %s, which %s defines", f, name, p)
			}
		}
		code := strings.Join(codeLines(src), "\n")
		for _, p := range parts {
			if p == f {
				continue
			}
			if w := sharedLines(code, read(p)); w != "" {
				t.Errorf("%s repeats lines of %s:\n%s", f, p, w)
			}
		}
	}
	for _, s := range Scripts() {
		seen := map[string]bool{}
		for _, name := range luaDefinitions(s.Source()) {
			if seen[name] {
				t.Errorf("%s: the composed script defines %s twice", s.Name(), name)
			}
			seen[name] = true
		}
	}
	// The checks see what they look for: a copy of a part (lib/time_ms), functions and all.
	part := read("lib/time_ms.lua")
	if !slices.Contains(luaFunctions("x = 1\n"+part), "time_ms") || sharedLines(strings.Join(codeLines("x = 1\n"+part), "\n"), part) == "" {
		t.Error("the checks do not see a copy of lib/time_ms")
	}
}

// sharedLines returns the first three consecutive code lines of part that code (code lines joined
// by newlines) holds too, or "".
func sharedLines(code, part string) string {
	pl := codeLines(part)
	for i := 0; i+3 <= len(pl); i++ {
		if w := strings.Join(pl[i:i+3], "\n"); strings.Contains(code, w) {
			return w
		}
	}
	return ""
}

var luaFunction = regexp.MustCompile(`(?m)^\s*local function ([A-Za-z_][A-Za-z0-9_]*)`)

// luaFunctions returns the names of the local functions src defines, at any depth.
func luaFunctions(src string) []string {
	var out []string
	for _, m := range luaFunction.FindAllStringSubmatch(src, -1) {
		out = append(out, m[1])
	}
	return out
}

var luaDefinition = regexp.MustCompile(`(?m)^local (?:function ([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_, ]*?)\s*=)`)

// luaDefinitions returns the names src defines at the start of a line (its top-level locals).
func luaDefinitions(src string) []string {
	var out []string
	for _, m := range luaDefinition.FindAllStringSubmatch(src, -1) {
		if m[1] != "" {
			out = append(out, m[1])
			continue
		}
		for _, n := range strings.Split(m[2], ",") {
			out = append(out, strings.TrimSpace(n))
		}
	}
	return out
}

// codeLines returns src's lines that are neither blank, nor comments, nor a lone keyword.
func codeLines(src string) []string {
	var out []string
	for line := range strings.Lines(src) {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "--"), line == "end", line == "else", line == "return out":
			continue
		}
		out = append(out, line)
	}
	return out
}
