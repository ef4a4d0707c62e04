package contenders

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/gorilla/sessions"
	"github.com/rbcervilla/redisstore/v9"
)

// The session workload: each session holds four attributes of 370 bytes (about 1.5 KB); nine
// requests in ten read it, one writes an attribute. Every library runs behind its own middleware
// over an in-process request and a response writer that discards the body.

var payload = func() []struct{ name, value string } {
	var p []struct{ name, value string }
	for _, n := range []string{"user", "roles", "prefs", "cart"} {
		p = append(p, struct{ name, value string }{n, strings.Repeat(n[:1], 370)})
	}
	return p
}()

// What a request does, by its path.
const (
	create = 'c' // fill a new session with the payload
	read   = 'r' // read the session
	write  = 'w' // read it and write one attribute
)

var paths = map[byte]*url.URL{
	create: {Path: "/c"},
	read:   {Path: "/r"},
	write:  {Path: "/w"},
}

func mode(r *http.Request) byte { return r.URL.Path[1] }

var visits atomic.Int64

// visit returns the value a write stores.
func visit() int64 { return visits.Add(1) }

// respond checks what the handler read and answers with a little of it.
func respond(w http.ResponseWriter, user string) {
	if len(user) != 370 {
		http.Error(w, "session lost its attributes", http.StatusInternalServerError)
		return
	}
	w.Write([]byte(user[:8]))
}

// sink is a response writer that keeps the status and the header fields and discards the body.
// Each worker reuses one.
type sink struct {
	h    http.Header
	code int
}

func newSink() *sink { return &sink{h: make(http.Header)} }

func (s *sink) Header() http.Header { return s.h }

func (s *sink) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return len(b), nil
}

func (s *sink) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}

func (s *sink) reset() {
	clear(s.h)
	s.code = 0
}

func request(ctx context.Context, m byte, cookie []string) *http.Request {
	r := &http.Request{
		Method: http.MethodGet, URL: paths[m], Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Host: "bench.test", RemoteAddr: "127.0.0.1:40000",
	}
	if cookie != nil {
		r.Header["Cookie"] = cookie
	}
	return r.WithContext(ctx)
}

// sessionInstance creates env.Keys sessions through h, each by a request that fills it, and
// returns the read-mostly workload over them.
func sessionInstance(ctx context.Context, env harness.Env, h http.Handler, cookieName string) (*harness.Instance, error) {
	cookies := make([][]string, env.Keys)
	sw := newSink()
	for i := range cookies {
		sw.reset()
		h.ServeHTTP(sw, request(ctx, create, nil))
		if sw.code != http.StatusOK {
			return nil, fmt.Errorf("creating a session: status %d", sw.code)
		}
		for _, c := range (&http.Response{Header: sw.h}).Cookies() {
			if c.Name == cookieName && c.Value != "" {
				cookies[i] = []string{c.Name + "=" + c.Value}
			}
		}
		if cookies[i] == nil {
			return nil, fmt.Errorf("creating a session: no %s cookie in %v", cookieName, sw.h)
		}
	}
	return &harness.Instance{Worker: func() harness.Op {
		sw, n := newSink(), 0
		return func(ctx context.Context, k int) error {
			n++
			m := byte(read)
			if n%10 == 0 {
				m = write
			}
			sw.reset()
			h.ServeHTTP(sw, request(ctx, m, cookies[k]))
			if sw.code != http.StatusOK && sw.code != 0 {
				return fmt.Errorf("status %d", sw.code)
			}
			return nil
		}
	}}, nil
}

// newSCS is scs with its go-redis store; with touch, an IdleTimeout, which makes every request
// rewrite the session to push its expiry.
func newSCS(touch bool) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		sm := scs.New()
		sm.Store = goredisstore.NewWithPrefix(env.Client, env.Prefix+"scs:")
		sm.Lifetime = lifetime
		if touch {
			sm.IdleTimeout = idleTimeout
		}
		h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			switch mode(r) {
			case create:
				for _, a := range payload {
					sm.Put(ctx, a.name, a.value)
				}
			case write:
				sm.Put(ctx, "visits", visit())
			}
			respond(w, sm.GetString(ctx, "user"))
		}))
		return sessionInstance(ctx, env, h, sm.Cookie.Name)
	}
}

// newGorilla is gorilla/sessions with a go-redis v9 store. gorilla has no middleware that saves:
// the handler calls Save, on writes only, or on every request to slide the expiry (touch).
func newGorilla(touch bool) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		store, err := redisstore.NewRedisStore(ctx, env.Client)
		if err != nil {
			return nil, err
		}
		store.KeyPrefix(env.Prefix + "gorilla:")
		store.Options(sessions.Options{
			Path: "/", MaxAge: int(lifetime / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
		})
		const name = "session"
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			save := touch
			switch mode(r) {
			case create:
				for _, a := range payload {
					s.Values[a.name] = a.value
				}
				save = true
			case write:
				s.Values["visits"] = visit()
				save = true
			}
			if save {
				if err := s.Save(r, w); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			user, _ := s.Values["user"].(string)
			respond(w, user)
		})
		return sessionInstance(ctx, env, h, name)
	}
}
