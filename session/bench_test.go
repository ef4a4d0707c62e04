package session_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// roundTrips counts what a client sends: one per command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// A read-mostly handler (9 reads to 1 write) over a session of about 1.5 KB, through the middleware,
// from parallel clients. Reports requests per second and Redis round trips per request.
func BenchmarkSessionReadMostly(b *testing.B) {
	be := redistest.Get(b, redistest.Names()[0])
	c, ok := be.Client.(*redis.Client)
	if !ok {
		b.Skip("benchmarked on a standalone server")
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.Options().Addr, DisableIdentity: true, PoolSize: 64})
	defer rdb.Close()
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		b.Fatal(err)
	}
	st, err := session.NewStore(rdb, session.WithKeyPrefix(redistest.Prefix(b)))
	if err != nil {
		b.Fatal(err)
	}
	s, _ := st.New()
	for _, k := range []string{"user", "roles", "prefs", "cart"} {
		s.Put(k, strings.Repeat(k[:1], 370))
	}
	if err := st.Save(ctx, s); err != nil {
		b.Fatal(err)
	}
	cookie := &http.Cookie{Name: "session", Value: string(s.Token())}
	var n atomic.Int64
	h := session.Middleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if n.Add(1)%10 == 0 {
			s.Put("visits", n.Load())
		}
		w.Write([]byte(s.GetString("user")[:8]))
	}))
	trips := &roundTrips{}
	rdb.AddHook(trips)
	b.ReportAllocs()
	b.SetParallelism(16)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = net.JoinHostPort("127.0.0.1", "1234")
		req.AddCookie(cookie)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
	b.ReportMetric(float64(trips.n.Load())/float64(b.N), "roundtrips/op")
}
