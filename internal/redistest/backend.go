// Package redistest gives gatehouse's tests real Redis servers: a standalone server, a three-master
// cluster, a Sentinel deployment, private servers a test may break, or a backend another package
// registers (the integration module's server in a container, through testcontainers-go). It
// depends on go-redis alone.
//
// Which backends a test run uses is set by GATEHOUSE_TEST_BACKENDS, a comma-separated list of
// "standalone", "cluster" and registered names such as "testcontainers" (default
// "standalone,cluster"). Each is started once per test binary, on first use, and stopped by Main:
//
//   - standalone: the server at REDIS_URL when set, otherwise a private redis-server from PATH on a
//     free loopback port;
//   - cluster: the cluster at REDIS_CLUSTER_ADDRS (comma-separated seed addresses) when set, otherwise
//     six private redis-server processes joined into a cluster by redis-cli;
//   - testcontainers (registered by integration/internal/containers): a container of the image
//     GATEHOUSE_REDIS_IMAGE (default gatehouse-redis:local, which 'make redis-image' builds from the
//     installed redis-server; no registry is needed).
//
// Tests never flush a database: each works under its own random key prefix (Prefix). When no Redis
// can be had the test fails with instructions; 'go test -short' skips integration tests instead.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Backend is one real Redis that the integration tests run against.
type Backend struct {
	// Name is "standalone", "cluster" or "testcontainers"; it names the subtest.
	Name string
	// Client is shared by every test of the binary; tests must not close it.
	Client redis.UniversalClient
	// Server is the private standalone server, when this package started one.
	Server *Server
	// Cluster is the private cluster, when this package started one.
	Cluster *Cluster

	close func()
}

// IsCluster reports whether the backend is a Redis Cluster.
func (b *Backend) IsCluster() bool {
	_, ok := b.Client.(*redis.ClusterClient)
	return ok
}

// Masters returns a client for each master (for a single server, its own client), for reading
// per-node state such as INFO commandstats. The clients are the backend's own; do not close them.
func (b *Backend) Masters(ctx context.Context) ([]*redis.Client, error) {
	switch c := b.Client.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		var out []*redis.Client
		err := c.ForEachMaster(ctx, func(_ context.Context, n *redis.Client) error {
			mu.Lock()
			out = append(out, n)
			mu.Unlock()
			return nil
		})
		return out, err
	case *redis.Client:
		return []*redis.Client{c}, nil
	default:
		return nil, fmt.Errorf("redistest: unexpected client type %T", c)
	}
}

type lazy struct {
	once sync.Once
	b    *Backend
	err  error
}

var (
	mu      sync.Mutex
	started = map[string]*lazy{}
)

// Names returns the backends selected by GATEHOUSE_TEST_BACKENDS.
func Names() []string {
	v := os.Getenv("GATEHOUSE_TEST_BACKENDS")
	if v == "" {
		v = "standalone,cluster"
	}
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Get returns the named backend, starting it on first use. It skips the test under -short or when
// the backend is not selected, and fails it, with instructions, when the backend cannot be had.
func Get(t testing.TB, name string) *Backend {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	if !slices.Contains(Names(), name) {
		t.Skipf("backend %s is not selected by GATEHOUSE_TEST_BACKENDS=%q", name, os.Getenv("GATEHOUSE_TEST_BACKENDS"))
	}
	mu.Lock()
	l, ok := started[name]
	if !ok {
		l = &lazy{}
		started[name] = l
	}
	mu.Unlock()
	l.once.Do(func() { l.b, l.err = start(name) })
	if l.err != nil {
		t.Fatalf("backend %s: %v", name, l.err)
	}
	return l.b
}

// Each runs fn as a subtest against each selected backend.
func Each(t *testing.T, fn func(t *testing.T, b *Backend)) {
	t.Helper()
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) { fn(t, Get(t, name)) })
	}
}

// Main runs the tests and then stops every backend this binary started. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for _, l := range started {
		if l.b != nil && l.b.close != nil {
			l.b.close()
		}
	}
	return code
}

func start(name string) (*Backend, error) {
	switch name {
	case "standalone":
		if u := os.Getenv("REDIS_URL"); u != "" {
			opt, err := redis.ParseURL(u)
			if err != nil {
				return nil, fmt.Errorf("REDIS_URL: %w", err)
			}
			opt.DisableIdentity = true
			c := redis.NewClient(opt)
			return &Backend{Name: name, Client: c, close: func() { c.Close() }}, ping(c)
		}
		s, err := StartServer()
		if err != nil {
			return nil, err
		}
		c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
		return &Backend{Name: name, Client: c, Server: s, close: func() { c.Close(); s.Close() }}, nil
	case "cluster":
		if v := os.Getenv("REDIS_CLUSTER_ADDRS"); v != "" {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(v, ","), DisableIdentity: true})
			return &Backend{Name: name, Client: c, close: func() { c.Close() }}, ping(c)
		}
		cl, err := StartCluster()
		if err != nil {
			return nil, err
		}
		c := cl.Client()
		return &Backend{Name: name, Client: c, Cluster: cl, close: func() { c.Close(); cl.Close() }}, nil
	default:
		mu.Lock()
		run, ok := registered[name]
		note := registeredNote()
		mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("unknown backend %q in GATEHOUSE_TEST_BACKENDS (want standalone or cluster; %s)", name, note)
		}
		addr, stop, err := run()
		if err != nil {
			return nil, err
		}
		c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
		return &Backend{Name: name, Client: c, close: func() { c.Close(); stop() }}, ping(c)
	}
}

// registered are the backends of other packages, by name: a server each starts on first use.
var registered = map[string]func() (addr string, stop func(), err error){}

// Register adds the backend name, a single server that start runs and stop removes, for
// GATEHOUSE_TEST_BACKENDS to select. The integration module registers "testcontainers" (a server
// in a container, through testcontainers-go), which this module does not depend on.
func Register(name string, start func() (addr string, stop func(), err error)) {
	mu.Lock()
	defer mu.Unlock()
	registered[name] = start
}

// registeredNote says which backends are registered; mu is held.
func registeredNote() string {
	if len(registered) == 0 {
		return "testcontainers is a backend of the integration module's tests only"
	}
	names := make([]string, 0, len(registered))
	for n := range registered {
		names = append(names, n)
	}
	slices.Sort(names)
	return "registered: " + strings.Join(names, ", ")
}

func ping(c redis.UniversalClient) error {
	if err := c.Ping(context.Background()).Err(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	return nil
}

// Prefix returns a key prefix unique to this test, such as "gh-test:3f9a0c1e:", so that tests
// sharing a server never see each other's keys.
func Prefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "gh-test:" + hex.EncodeToString(b[:]) + ":"
}
