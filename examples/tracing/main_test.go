package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/examples/internal/peers"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// The example exports its spans over OTLP/HTTP to the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT: here
// a local receiver that decodes what arrives, against a real Redis.
func TestExportsOTLP(t *testing.T) {
	b := redistest.Get(t, "standalone")
	c, ok := b.Client.(*redis.Client)
	if !ok {
		t.Fatalf("standalone backend client is %T", b.Client)
	}
	var mu sync.Mutex
	names := map[string]int{}
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(body))
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names[sp.Name]++
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "gatehouse-example")

	o := c.Options()
	url := "redis://" + o.Addr + "/" + "0"
	if err := run(context.Background(), url, redistest.Prefix(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, want := range map[string]int{
		"GET /api/orders": 1, "gatehouse.limiter.allow": 3, "gatehouse.session.save": 1,
		"gatehouse.session.login": 1, "gatehouse.session.load": 1, "evalsha": 6,
	} {
		if names[name] < want {
			t.Errorf("received %d %q spans, want at least %d (received %v)", names[name], name, want, names)
		}
	}
	all := strings.Join(bodies, "")
	for _, secret := range []string{"client-42", "user-42", "book"} {
		if strings.Contains(all, secret) {
			t.Errorf("the exported traces contain %q", secret)
		}
	}
	if !strings.Contains(all, "gatehouse-example") {
		t.Error("the exported resource lacks OTEL_SERVICE_NAME")
	}
}

// A Redis that accepts connections and never answers, or an OTLP endpoint that does the same,
// makes run fail after its timeouts, not minutes later.
func TestGivesUpOnSilentPeers(t *testing.T) {
	const bound = 20 * time.Second // far above runTimeout and flushTimeout: only a hang reaches it
	b := redistest.Get(t, "standalone")
	c, ok := b.Client.(*redis.Client)
	if !ok {
		t.Fatalf("standalone backend client is %T", b.Client)
	}
	silent := peers.Silent(t)
	for _, tc := range []struct {
		name, redisURL, endpoint, want string
	}{
		{"SilentRedis", "redis://" + silent + "/0", "", "context deadline exceeded"},
		{"SilentOTLP", "redis://" + c.Options().Addr + "/0", "http://" + silent, "exporting the traces: context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- run(context.Background(), tc.redisURL, redistest.Prefix(t)) }()
			select {
			case err := <-done:
				t.Logf("run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("run: %v, want an error saying %q", err, tc.want)
				}
			case <-time.After(bound):
				t.Fatalf("run still going after %v", bound)
			}
		})
	}
}
