//go:build unix

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/examples/internal/peers"
	"github.com/gatehouse/gatehouse/internal/redistest"
)

// exitBound is how long a gateway may take to exit, at most, in these tests: far above the
// defaultConnectTimeout, drainTimeout and flushTimeout it has, so that only a hang reaches it, even on
// a loaded machine. The figure each test measured is logged.
const exitBound = 15 * time.Second

// raceEnabled is set when the tests run with the race detector (race_test.go); the command they
// build then has it too, and a race it finds makes it exit 66 with a report.
var raceEnabled bool

// TestCommand runs the gateway as its users do: as a process of its own, built here once, with
// flags, signals, real sockets and real Redis servers.
func TestCommand(t *testing.T) {
	bin := buildGateway(t)
	t.Run("StartupErrors", func(t *testing.T) { testStartupErrors(t, bin) })
	t.Run("InterruptWithUnreachableOTLP", func(t *testing.T) { testInterruptWithUnreachableOTLP(t, bin) })
	t.Run("InterruptWhileConnecting", func(t *testing.T) { testInterruptWhileConnecting(t, bin) })
	t.Run("SecondInterrupt", func(t *testing.T) { testSecondInterrupt(t, bin) })
	t.Run("RedisFailures", func(t *testing.T) { testRedisFailures(t, bin) })
}

// Every start-up error is printed, without a panic, and the command exits 1 (2 for arguments the
// flag package cannot parse, as Go commands do), promptly, whatever Redis does.
func testStartupErrors(t *testing.T, bin string) {
	silent, stalling := peers.Silent(t), peers.StallingRedis(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		want    []string // in stderr
		wantNot []string // not in stderr
	}{
		{name: "MalformedRedisURL", args: []string{"-redis", "foo://bad"}, code: 1,
			want: []string{"-redis: want a URL such as redis://", "invalid URL scheme"}},
		{name: "MalformedRedisURLWithPassword", args: []string{"-redis", "redis://:hunter2@127.0.0.1:notaport/0"}, code: 1,
			want: []string{"-redis: want a URL"}, wantNot: []string{"hunter2"}},
		{name: "RefusedRedis", args: []string{"-redis", "redis://:hunter2@" + peers.Refused(t) + "/0"}, code: 1,
			want: []string{"connecting to Redis at 127.0.0.1:", "connection refused"}, wantNot: []string{"hunter2"}},
		{name: "SilentRedis", args: []string{"-redis", "redis://" + silent + "/0"}, code: 1,
			want: []string{"connecting to Redis at " + silent, "no answer within " + defaultConnectTimeout.String()}},
		// Answers PING, then stalls (as a proxy in front of a dead Redis can): go-redis alone
		// would retry the script loading for about 20 s.
		{name: "RedisStallsAfterPing", args: []string{"-redis", "redis://" + stalling + "/0"}, code: 1,
			want: []string{"connecting to Redis at " + stalling, "no answer within " + defaultConnectTimeout.String()}},
		{name: "NegativeConnectTimeout", args: []string{"-connect-timeout=-1s"}, code: 1,
			want: []string{"-connect-timeout -1s: want a positive duration"}},
		{name: "UnknownFailurePolicy", args: []string{"-on-redis-failure=bogus"}, code: 1,
			want: []string{`-on-redis-failure \"bogus\": want local, open, closed or error`}},
		{name: "MalformedUpstream", args: []string{"-upstream", "localhost:9000"}, code: 1,
			want: []string{`-upstream \"localhost:9000\": want a URL such as http://`}},
		{name: "AddressInUse", args: []string{"-addr", busy.Addr().String()}, code: 1,
			want: []string{"-addr " + busy.Addr().String(), "address already in use"}},
		{name: "UnknownFlag", args: []string{"-no-such-flag"}, code: 2,
			want: []string{"flag provided but not defined: -no-such-flag", "Usage of gateway"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if !slices.Contains(args, "-addr") {
				args = append([]string{"-addr", "127.0.0.1:0"}, args...)
			}
			p := startProcess(t, bin, nil, args...)
			code, took := p.wait(t, exitBound)
			out := p.output()
			t.Logf("exited %d after %v", code, took.Round(time.Millisecond))
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, out)
			}
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("stderr lacks %q:\n%s", s, out)
				}
			}
			for _, s := range append(tc.wantNot, "panic", "goroutine ", "DATA RACE") {
				if strings.Contains(out, s) {
					t.Errorf("stderr contains %q:\n%s", s, out)
				}
			}
		})
	}
}

// Ctrl-C stops the gateway promptly, exit code 0, even when the OTLP endpoint refuses connections
// or accepts them and never answers; it says it stopped, and that the telemetry was not all sent.
func testInterruptWithUnreachableOTLP(t *testing.T, bin string) {
	for _, tc := range []struct{ name, endpoint string }{
		{"Refused", "http://" + peers.Refused(t)},
		{"Silent", "http://" + peers.Silent(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProcess(t, bin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + tc.endpoint}, "-addr", "127.0.0.1:0")
			v := p.visitor(t)
			v.do("GET", "/api/hello", "/api/", 200, nil) // a span and metrics to export
			p.interrupt(t)
			code, took := p.wait(t, exitBound)
			out := p.output()
			t.Logf("exited %d %v after SIGINT", code, took.Round(time.Millisecond))
			if code != 0 {
				t.Errorf("exit code %d after SIGINT, want 0; stderr:\n%s", code, out)
			}
			for _, s := range []string{"shutting down", "telemetry: not everything was exported", "gateway stopped"} {
				if !strings.Contains(out, s) {
					t.Errorf("stderr lacks %q:\n%s", s, out)
				}
			}
			for _, s := range []string{"panic", "goroutine ", "DATA RACE"} {
				if strings.Contains(out, s) {
					t.Errorf("stderr contains %q:\n%s", s, out)
				}
			}
			p.checkRequestLog(t)
		})
	}
}

// Ctrl-C while the gateway waits for a Redis that answers PING and then nothing stops it at once,
// not when the wait is over (here, an hour, or go-redis' own retries, about 20 s): exit 0.
func testInterruptWhileConnecting(t *testing.T, bin string) {
	t.Parallel()
	stalling := peers.StallingRedis(t)
	p := startProcess(t, bin, nil, "-addr", "127.0.0.1:0", "-redis", "redis://"+stalling+"/0", "-connect-timeout", "1h")
	p.waitForLog(t, "connecting to Redis at "+stalling)
	p.interrupt(t)
	code, took := p.wait(t, exitBound)
	out := p.output()
	t.Logf("exited %d %v after SIGINT", code, took.Round(time.Millisecond))
	if code != 0 || !strings.Contains(out, "gateway stopped") || strings.Contains(out, "panic") {
		t.Errorf("exit code %d after SIGINT while connecting, want 0 and \"gateway stopped\"; stderr:\n%s", code, out)
	}
}

// A second Ctrl-C, while the gateway waits for its telemetry to be exported, ends the process at
// once: the signal kills it, where a clean stop would exit 0.
func testSecondInterrupt(t *testing.T, bin string) {
	t.Parallel()
	p := startProcess(t, bin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + peers.Silent(t)}, "-addr", "127.0.0.1:0")
	p.visitor(t).do("GET", "/api/hello", "/api/", 200, nil)
	p.interrupt(t)
	p.waitForLog(t, "shutting down")
	p.interrupt(t)
	p.wait(t, exitBound)
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("after a second SIGINT: %v, want the process killed by SIGINT; stderr:\n%s", p.cmd.ProcessState, p.output())
	}
}

// With a real Redis that stops mid-run, the gateway keeps answering as -on-redis-failure says,
// logs each request and each failure (the limiter's, the session middleware's 503s), and comes
// back when Redis does. Nothing secret is in its log.
func testRedisFailures(t *testing.T, bin string) {
	for _, tc := range []struct {
		policy string
		status int    // of an anonymous API request while Redis is down
		retry  string // its Retry-After
		log    string // the limiter's log message
	}{
		{"local", 200, "", "limiter: Redis unavailable"},
		{"open", 200, "", "limiter: Redis unavailable"},
		{"closed", 503, "5", "limiter: Redis unavailable"},
		{"error", 503, "1", "limithttp: rate limit not decided"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			srv, err := redistest.StartServer()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			p := startProcess(t, bin, nil, "-addr", "127.0.0.1:0", "-redis", "redis://"+srv.Addr+"/0", "-on-redis-failure", tc.policy)
			secret := randomHex(t)
			user := "alice-" + secret

			anon, alice := p.visitor(t), p.visitor(t)
			if res := anon.do("GET", "/api/hello", "/api/", 200, nil); res.Header.Get("RateLimit") == "" {
				t.Errorf("before the outage: no RateLimit field")
			}
			alice.do("POST", "/login", "POST /login", 200, url.Values{"user": {user}})
			token := alice.cookie(t)
			alice.do("GET", "/me", "GET /me", 200, nil)
			anon.do("GET", "/api/orders/order-"+secret, "/api/", 200, nil) // the path is the client's
			anon.do("GET", "/no-such-page-"+secret, "", 404, nil)

			srv.Stop()
			res := anon.do("GET", "/api/hello", "/api/", tc.status, nil)
			if got := res.Header.Get("Retry-After"); got != tc.retry {
				t.Errorf("Redis down, %s: Retry-After %q, want %q", tc.policy, got, tc.retry)
			}
			// The session middleware cannot load alice's session: 503, before any route.
			for _, path := range []string{"/me", "/api/hello"} {
				if res := alice.do("GET", path, "", 503, nil); res.Header.Get("Retry-After") != "1" {
					t.Errorf("Redis down, GET %s signed in: Retry-After %q, want 1", path, res.Header.Get("Retry-After"))
				}
			}

			// Redis comes back (empty: it kept nothing). The gateway recovers without a restart:
			// a newcomer (no cookie, so every request reaches its route) can sign in, and the API
			// answers.
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(exitBound)
			for {
				if p.visitor(t).try("POST", "/login", "POST /login", url.Values{"user": {user}}) == 200 &&
					anon.try("GET", "/api/hello", "/api/", nil) == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Redis back, the gateway still failing after %v:\n%s", exitBound, p.output())
				}
				time.Sleep(200 * time.Millisecond)
			}

			p.interrupt(t)
			if code, _ := p.wait(t, exitBound); code != 0 {
				t.Errorf("exit code %d after SIGINT, want 0", code)
			}
			out := p.output()
			p.checkRequestLog(t)
			recs := records(out)
			if !slices.ContainsFunc(recs, func(r map[string]string) bool { return r["msg"] == tc.log }) {
				t.Errorf("no %q record:\n%s", tc.log, out)
			}
			if !slices.ContainsFunc(recs, func(r map[string]string) bool {
				return r["msg"] == "session: load failed" && r["level"] == "ERROR" && r["unavailable"] == "true"
			}) {
				t.Errorf("no record of the session middleware's 503:\n%s", out)
			}
			for _, s := range []string{token, user, secret, "user:", "ip:127.0.0.1", "panic", "DATA RACE"} {
				if strings.Contains(out, s) {
					t.Errorf("the log contains %q:\n%s", s, out)
				}
			}
		})
	}
}

// buildGateway builds the command into a temporary directory, with the race detector when the
// tests have it.
func buildGateway(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the gateway needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "gateway")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a gateway process, its standard error and output, and the requests sent to it.
type process struct {
	cmd    *exec.Cmd
	start  time.Time
	out    lockedBuffer
	exited chan struct{}
	base   string // http://host:port, once it listens
	mu     sync.Mutex
	expect []requestLine
}

// requestLine is what the request log should say of one request.
type requestLine struct {
	method, pattern string
	status          int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProcess starts bin with args, in the test's environment without its OTEL_ variables plus
// env, and kills it at the end of the test if it is still running.
func startProcess(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") })
	p.cmd.Env = append(p.cmd.Env, env...)
	if os.Getenv("GORACE") == "" {
		// The race detector's default pause of a second at exit would be in every figure measured.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("gateway %q output:\n%s", args, p.output())
		}
	})
	return p
}

func (p *process) output() string { return p.out.String() }

var listening = regexp.MustCompile(`gatehouse demo gateway on (http://127\.0\.0\.1:\d+)`)

// url returns the gateway's base URL, once its log says it listens.
func (p *process) url(t *testing.T) string {
	t.Helper()
	if p.base != "" {
		return p.base
	}
	deadline := time.Now().Add(exitBound)
	for {
		if m := listening.FindStringSubmatch(p.output()); m != nil {
			p.base = m[1]
			return p.base
		}
		select {
		case <-p.exited:
			t.Fatalf("the gateway exited before listening:\n%s", p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not listen within %v:\n%s", exitBound, p.output())
		}
	}
}

// waitForLog waits until the output holds s.
func (p *process) waitForLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(exitBound)
	for !strings.Contains(p.output(), s) {
		select {
		case <-p.exited:
			t.Fatalf("the gateway exited before logging %q:\n%s", s, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log %q within %v:\n%s", s, exitBound, p.output())
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and starts the clock wait reads.
func (p *process) interrupt(t *testing.T) {
	t.Helper()
	p.start = time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
}

// wait returns the exit code and the time since the process started (or was interrupted). A
// process still running after bound is killed, and the test fails.
func (p *process) wait(t *testing.T, bound time.Duration) (code int, took time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), time.Since(p.start)
	case <-time.After(bound - time.Since(p.start)):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("still running %v after it started (or was interrupted); killed. Output:\n%s", bound, p.output())
	}
	return -1, bound
}

// visitor is an HTTP client of the gateway with its own cookie jar.
type visitor struct {
	t    *testing.T
	p    *process
	base string
	http *http.Client
}

func (p *process) visitor(t *testing.T) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, p: p, base: p.url(t), http: &http.Client{Jar: jar, Timeout: exitBound}}
}

// do sends a request that the route pattern serves (or none: ""), and fails the test unless it is
// answered with status.
func (v *visitor) do(method, path, pattern string, status int, form url.Values) *http.Response {
	v.t.Helper()
	res, err := v.send(method, path, pattern, form)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	if res.StatusCode != status {
		v.t.Errorf("%s %s: %s, want %d", method, path, res.Status, status)
	}
	return res
}

// try sends a request and returns its status, or 0 if none came.
func (v *visitor) try(method, path, pattern string, form url.Values) int {
	res, err := v.send(method, path, pattern, form)
	if err != nil {
		return 0
	}
	return res.StatusCode
}

func (v *visitor) send(method, path, pattern string, form url.Values) (*http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, v.base+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := v.http.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	v.p.mu.Lock()
	v.p.expect = append(v.p.expect, requestLine{method, pattern, res.StatusCode})
	v.p.mu.Unlock()
	return res, nil
}

// cookie returns the session cookie's value.
func (v *visitor) cookie(t *testing.T) string {
	t.Helper()
	u, _ := url.Parse(v.base)
	for _, c := range v.http.Jar.Cookies(u) {
		if len(c.Value) >= 40 {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// checkRequestLog checks that the log has one request record per request sent, in order, with
// its method, route pattern, status and a duration. Call it once the process has exited.
func (p *process) checkRequestLog(t *testing.T) {
	t.Helper()
	var got []requestLine
	for _, r := range records(p.output()) {
		if r["msg"] != "request" {
			continue
		}
		if r["level"] != "INFO" || r["duration"] == "" {
			t.Errorf("request record %v: want level INFO and a duration", r)
		}
		var status int
		fmt.Sscan(r["status"], &status)
		got = append(got, requestLine{r["method"], r["pattern"], status})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Equal(got, p.expect) {
		t.Errorf("request log:\n got %v\nwant %v", got, p.expect)
	}
}

var logfmtPair = regexp.MustCompile(`([A-Za-z_.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// records parses the lines slog's TextHandler wrote.
func records(out string) []map[string]string {
	var recs []map[string]string
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "time=") {
			continue
		}
		r := map[string]string{}
		for _, m := range logfmtPair.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if strings.HasPrefix(v, `"`) {
				fmt.Sscanf(v, "%q", &v)
			}
			r[m[1]] = v
		}
		recs = append(recs, r)
	}
	return recs
}

func randomHex(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
