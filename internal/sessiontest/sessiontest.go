// Package sessiontest holds what the session store's tests share across packages.
package sessiontest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/session"
)

// Stored creates and saves a session holding the given string attributes (name, value, ...).
func Stored(t testing.TB, st *session.Store, attrs ...string) *session.Session {
	t.Helper()
	s, err := st.New()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		if err := s.Put(attrs[i], attrs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// MustLoad loads the session of tok, failing the test when it cannot.
func MustLoad(t testing.TB, st *session.Store, tok session.Token) *session.Session {
	t.Helper()
	s, err := st.Load(context.Background(), tok)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// Together runs fns at once and waits for all of them.
func Together(fns ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, fn := range fns {
		wg.Go(func() { <-start; fn() })
	}
	close(start)
	wg.Wait()
}

// NewStore returns a store over b under a fresh prefix, with opts, and the prefix. (The session
// package's own tests decide on a clock of their own with session.ClockAt, from its
// export_test.go.)
func NewStore(t testing.TB, b *redistest.Backend, opts ...session.Option) (*session.Store, string) {
	t.Helper()
	prefix := redistest.Prefix(t)
	opts = append([]session.Option{session.WithKeyPrefix(prefix)}, opts...)
	st, err := session.NewStore(b.Client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st, prefix
}

// LogRecords collects the JSON records of a slog logger, at every level.
type LogRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *LogRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Logger returns a logger writing to l.
func (l *LogRecords) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Text returns every record, one JSON object a line.
func (l *LogRecords) Text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Find returns the records whose message starts with msg.
func (l *LogRecords) Find(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.Text()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m, _ := rec["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// One returns the only record whose message starts with msg, failing the test if there is not
// exactly one.
func (l *LogRecords) One(t testing.TB, msg string) map[string]any {
	t.Helper()
	recs := l.Find(t, msg)
	if len(recs) != 1 {
		t.Fatalf("%d log records %q, want 1; log:\n%s", len(recs), msg, l.Text())
	}
	return recs[0]
}

// NoSecrets fails the test if the log holds any of secrets.
func (l *LogRecords) NoSecrets(t testing.TB, secrets ...string) {
	t.Helper()
	text := l.Text()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("the log holds %q:\n%s", s, text)
		}
	}
}
