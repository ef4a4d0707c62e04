package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// The tests' limits: the demo's, with refills slow enough that a slow machine cannot see a
// token come back between two requests.
func testConfig() config {
	return config{
		anonymous: []limiter.Limit{limiter.PerMinute(1).WithBurst(5).WithName("burst"), limiter.PerHour(100).WithName("hourly")},
		signedIn:  []limiter.Limit{limiter.PerMinute(1).WithBurst(20).WithName("burst"), limiter.PerHour(2000).WithName("hourly")},
	}
}

// start runs the gateway on a free loopback port until stop is called or the test ends, logging
// to the test's output, and returns its base URL. stop returns once the gateway has shut down and flushed its telemetry.
func start(t *testing.T, cfg config) (base string, stop func()) {
	t.Helper()
	cfg.addr = "127.0.0.1:0"
	cfg.logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ready) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(stop)
	select {
	case addr := <-ready:
		return "http://" + addr, stop
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", stop
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar}}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// tour walks the demo as its doc comment does: the anonymous quota runs out, alice signs in and
// gets her own, larger quota and sees her session, then signs out.
func tour(t *testing.T, base string) {
	c := newClient(t, base)
	for i := range 5 {
		res, _ := c.do("GET", "/api/hello", nil)
		if res.StatusCode != 200 {
			t.Fatalf("anonymous request %d: %s", i, res.Status)
		}
		if got := res.Header.Get("RateLimit-Policy"); got != `"burst";q=5;w=300, "hourly";q=100;w=3600` {
			t.Errorf("anonymous RateLimit-Policy %q", got)
		}
		if got, want := res.Header.Get("RateLimit"), `"burst";r=`+strconv.Itoa(4-i)+`;`; !strings.HasPrefix(got, want) {
			t.Errorf("anonymous request %d: RateLimit %q, want it to start %q", i, got, want)
		}
	}
	// Refused by Redis, then from the deny cache: the same answer.
	for i := range 2 {
		res, _ := c.do("GET", "/api/hello", nil)
		if retry, _ := strconv.Atoi(res.Header.Get("Retry-After")); res.StatusCode != 429 || retry < 59 || retry > 60 {
			t.Fatalf("refused request %d: %s, Retry-After %q; want 429 and 60 s less the time passed", i, res.Status, res.Header.Get("Retry-After"))
		}
		if got := res.Header.Get("RateLimit"); !strings.HasPrefix(got, `"burst";r=0;`) {
			t.Errorf("refused request %d: RateLimit %q", i, got)
		}
	}

	res, body := c.do("POST", "/login", url.Values{"user": {"alice"}})
	if res.StatusCode != 200 {
		t.Fatalf("login: %s %s", res.Status, body)
	}
	res, _ = c.do("GET", "/api/hello", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("RateLimit"), `"burst";r=19;`) {
		t.Errorf("alice's first request: %s, RateLimit %q", res.Status, res.Header.Get("RateLimit"))
	}
	res, body = c.do("GET", "/me", nil)
	var me struct {
		User     *string `json:"user"`
		Sessions []struct{ Current bool }
	}
	if err := json.Unmarshal([]byte(body), &me); err != nil || res.StatusCode != 200 || me.User == nil || *me.User != "alice" ||
		len(me.Sessions) != 1 || !me.Sessions[0].Current {
		t.Errorf("/me: %s %s", res.Status, body)
	}
	if res, _ := c.do("POST", "/logout", nil); res.StatusCode != 204 {
		t.Errorf("logout: %s", res.Status)
	}
	if _, body := c.do("GET", "/me", nil); !strings.Contains(body, `"user":null`) {
		t.Errorf("/me after logout: %s", body)
	}
}

// The demo as README runs it: on the embedded stand-in.
func TestGatewayOnStandIn(t *testing.T) {
	base, _ := start(t, testConfig())
	tour(t, base)
}

// The same gateway on a real Redis.
func TestGatewayOnRedis(t *testing.T) {
	b := redistest.Get(t, "standalone")
	c, ok := b.Client.(*redis.Client)
	if !ok {
		t.Fatalf("standalone backend client is %T", b.Client)
	}
	cfg := testConfig()
	cfg.redisURL, cfg.keyPrefix = "redis://"+c.Options().Addr+"/0", redistest.Prefix(t)
	base, _ := start(t, cfg)
	tour(t, base)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the demo exports traces and metrics over OTLP/HTTP: here to
// a local receiver that decodes them. The limiter's span is a child of the request's span, and no
// session token, user ID or limiter key is in anything exported.
func TestGatewayExportsOTLP(t *testing.T) {
	var mu sync.Mutex
	spans := map[string][]string{} // name -> parent span IDs
	ids := map[string]string{}     // span ID -> name
	attrs := map[string][]string{} // span name -> its attributes' keys
	traces := map[string]string{}  // span name -> trace ID, hex
	metrics := map[string]bool{}
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(body))
		switch r.URL.Path {
		case "/v1/traces":
			var req collectortrace.ExportTraceServiceRequest
			if proto.Unmarshal(body, &req) != nil {
				http.Error(w, "bad export", http.StatusBadRequest)
				return
			}
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						spans[sp.Name] = append(spans[sp.Name], string(sp.ParentSpanId))
						ids[string(sp.SpanId)] = sp.Name
						traces[sp.Name] = hex.EncodeToString(sp.TraceId)
						for _, a := range sp.Attributes {
							attrs[sp.Name] = append(attrs[sp.Name], a.Key)
						}
					}
				}
			}
		case "/v1/metrics":
			var req collectormetrics.ExportMetricsServiceRequest
			if proto.Unmarshal(body, &req) != nil {
				http.Error(w, "bad export", http.StatusBadRequest)
				return
			}
			for _, rm := range req.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						metrics[m.Name] = true
					}
				}
			}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "gatehouse-demo")

	base, stop := start(t, testConfig())
	c := newClient(t, base)
	const user = "alice-7f3a"
	if res, body := c.do("POST", "/login", url.Values{"user": {user}}); res.StatusCode != 200 {
		t.Fatalf("login: %s %s", res.Status, body)
	}
	u, _ := url.Parse(base)
	var token string
	for _, ck := range c.http.Jar.Cookies(u) {
		token = ck.Value
	}
	if len(token) < 40 {
		t.Fatalf("no session cookie after login: %q", token)
	}
	for range 3 {
		c.do("GET", "/api/hello", nil)
	}
	const page = "/no-such-page-5e1f" // a path the client chose: not a span name
	if res, _ := c.do("GET", page, nil); res.StatusCode != 404 {
		t.Errorf("GET %s: %s, want 404", page, res.Status)
	}
	// A caller's traceparent continues its trace.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", base+"/me", nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
	}
	stop() // shuts the gateway down, which flushes both exporters

	mu.Lock()
	defer mu.Unlock()
	for name, want := range map[string]int{
		"POST /login": 1, "GET /api": 3, "gatehouse.limiter.allow": 3,
		"gatehouse.session.login": 1, "gatehouse.session.load": 3, "evalsha": 4,
		"redis.pipeline hgetall evalsha": 3, // a session load's read and touch
	} {
		if len(spans[name]) < want {
			t.Errorf("received %d %q spans, want at least %d", len(spans[name]), name, want)
		}
	}
	if len(spans["GET"]) != 1 || len(spans["GET "+page]) != 0 {
		t.Errorf("the 404's span: %d named GET, %d named GET %s; want one named GET", len(spans["GET"]), len(spans["GET "+page]), page)
	}
	for _, parent := range spans["gatehouse.limiter.allow"] {
		if ids[parent] != "GET /api" {
			t.Errorf("a limiter span's parent is %q, want the request's span", ids[parent])
		}
	}
	// The request's span says what route served it and how it ended, and nothing the client chose
	// or is known by: not the path (which may hold identifiers), nor the client's address (a
	// visitor's limiter key), nor its user agent.
	for _, name := range []string{"POST /login", "GET /api", "GET"} {
		got := strings.Join(attrs[name], " ")
		for _, want := range []string{"http.request.method", "http.response.status_code"} {
			if !slices.Contains(attrs[name], want) {
				t.Errorf("span %q has attributes %s, want %s among them", name, got, want)
			}
		}
		for _, key := range attrs[name] {
			if strings.HasPrefix(key, "url.") || strings.HasPrefix(key, "client.") || strings.HasPrefix(key, "user_agent.") ||
				strings.HasPrefix(key, "network.peer.") || key == "http.client_ip" {
				t.Errorf("span %q has attribute %s (all: %s)", name, key, got)
			}
		}
	}
	if traces["GET /me"] != traceID {
		t.Errorf("GET /me with a traceparent: trace %q, want %s", traces["GET /me"], traceID)
	}
	if !slices.Contains(attrs["GET /api"], "http.route") {
		t.Errorf("span GET /api has attributes %v, want http.route among them", attrs["GET /api"])
	}
	for _, name := range []string{"gatehouse.limiter.decisions", "gatehouse.limiter.duration", "gatehouse.session.operations"} {
		if !metrics[name] {
			t.Errorf("metric %s not exported (got %v)", name, metrics)
		}
	}
	all := strings.Join(bodies, "")
	for _, secret := range []string{token, token[4:], user, "user:" + user} {
		if strings.Contains(all, secret) {
			t.Errorf("the exported telemetry contains %q", secret)
		}
	}
	if !strings.Contains(all, "gatehouse-demo") {
		t.Error("the exported resource lacks OTEL_SERVICE_NAME")
	}
}
