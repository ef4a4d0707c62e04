package redistest

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Private starts a redis-server of the test's own, with extra command-line options, which the test
// may stop, pause or break, and a client for it (ClientFor). Both are closed when the test ends.
// It skips the test under -short.
func Private(t testing.TB, extra ...string) (*Server, *redis.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	srv, err := StartServer(extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, ClientFor(t, srv.Addr)
}

// ClientFor returns a client for the server at addr that applies context deadlines, does not
// retry, and gives up dialing after a second; opts adjust its options. It is closed when the test
// ends.
func ClientFor(t testing.TB, addr string, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, ContextTimeoutEnabled: true}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// IsTimeout reports whether err is a deadline passing: the context's, or the connection's that
// go-redis sets from it.
func IsTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// Calls is a go-redis hook that counts the commands a client sends, pipelines included: all of
// them in N, and the EVALSHA commands by digest (Evals).
type Calls struct {
	N     atomic.Int64
	evals sync.Map // digest -> *atomic.Int64
}

// Evals returns how many EVALSHA commands of the script with digest sha were sent.
func (c *Calls) Evals(sha string) int64 {
	if n, ok := c.evals.Load(sha); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func (c *Calls) count(cmd redis.Cmder) {
	c.N.Add(1)
	if args := cmd.Args(); len(args) > 1 && cmd.Name() == "evalsha" {
		sha, _ := args[1].(string)
		n, _ := c.evals.LoadOrStore(sha, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
}

// DialHook implements redis.Hook.
func (c *Calls) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Calls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.count(cmd); return next(ctx, cmd) }
}

// ProcessPipelineHook implements redis.Hook.
func (c *Calls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// WaitClients waits, at most 10 seconds, until the server c talks to has n clients connected
// (CLIENT LIST), failing the test otherwise. Once the connections of a closed client are gone,
// the server has read and run every command they carried.
func WaitClients(t testing.TB, c *redis.Client, n int) {
	t.Helper()
	var list string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if list, err = c.ClientList(context.Background()).Result(); err != nil {
			t.Fatal(err)
		}
		if len(strings.Split(strings.TrimSpace(list), "\n")) == n {
			return
		}
	}
	t.Fatalf("the server still has other clients than %d after 10s:\n%s", n, list)
}

// FailSnapshot makes the server of c fail a snapshot, so that it refuses writes with MISCONF
// (it sets stop-writes-on-bgsave-error, the default, again): the server must have been started with
// "--enable-protected-configs yes" (to move its dir) and a save point ("--save", "3600 1"). Its
// dir becomes /proc, where nobody can create a file, and a BGSAVE fails there.
func FailSnapshot(t testing.TB, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "dir", "/proc").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigSet(ctx, "stop-writes-on-bgsave-error", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.BgSave(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var info string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if info, err = c.Info(ctx, "persistence").Result(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "rdb_bgsave_in_progress:0") && strings.Contains(info, "rdb_last_bgsave_status:err") {
			return
		}
	}
	t.Fatalf("the snapshot did not fail within 10s:\n%s", info)
}

// WaitBlocked returns the ID of the connection named name (redis.Options.ClientName) of admin's
// server that waits in BLPOP, once there is one (CLIENT LIST), failing the test if none shows
// within 10s. The name tells it from a connection another test closed on its side, which the
// server may still list, in BLPOP, for a moment.
func WaitBlocked(t testing.TB, admin *redis.Client, name string) int64 {
	t.Helper()
	var list string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var err error
		if list, err = admin.ClientList(context.Background()).Result(); err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
			if !strings.Contains(line, " cmd=blpop") || !strings.Contains(line, " name="+name+" ") {
				continue
			}
			for f := range strings.FieldsSeq(line) {
				if v, ok := strings.CutPrefix(f, "id="); ok {
					id, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					return id
				}
			}
		}
	}
	t.Fatalf("no connection named %q waits in BLPOP after 10s:\n%s", name, list)
	return 0
}
