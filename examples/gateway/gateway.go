package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

type config struct {
	addr      string
	redisURL  string // "" for the embedded stand-in
	upstream  string // "" for the built-in API
	failure   string // local (default), open, closed or error
	keyPrefix string // of every key the gateway writes (default "demo:")

	anonymous, signedIn []limiter.Limit // the API's limits (default: the variables below)
}

// The API's limits: anonymous clients, per address, get a small quota; signed-in users, per user,
// a larger one. Each is a burst limit and an hourly one, decided together in one script call.
var (
	anonymous = []limiter.Limit{
		limiter.PerSecond(1).WithBurst(5).WithName("burst"),
		limiter.PerHour(100).WithName("hourly"),
	}
	signedIn = []limiter.Limit{
		limiter.PerSecond(5).WithBurst(20).WithName("burst"),
		limiter.PerHour(2000).WithName("hourly"),
	}
)

type gateway struct {
	rdb       *redis.Client
	standIn   *standIn // nil with a real Redis
	redisName string
	lim       *limiter.Limiter
	store     *session.Store
	api       http.Handler

	anonymous, signedIn []limiter.Limit
}

func newGateway(ctx context.Context, cfg config) (gw *gateway, err error) {
	gw = &gateway{anonymous: cfg.anonymous, signedIn: cfg.signedIn}
	if gw.anonymous == nil {
		gw.anonymous = anonymous
	}
	if gw.signedIn == nil {
		gw.signedIn = signedIn
	}
	defer func() {
		if err != nil {
			gw.Close()
		}
	}()
	var opt *redis.Options
	if cfg.redisURL == "" {
		if gw.standIn, err = startStandIn(); err != nil {
			return nil, err
		}
		opt = &redis.Options{Addr: gw.standIn.Addr()}
		gw.redisName = "embedded stand-in (miniredis) at " + gw.standIn.Addr()
	} else {
		if opt, err = redis.ParseURL(cfg.redisURL); err != nil {
			return nil, err
		}
		gw.redisName = opt.Addr
	}
	// As docs/tracing.md advises: deadlines honoured (for the limiter's timeout), no CLIENT
	// SETINFO or maintenance-notification handshake, and Redis spans without command arguments.
	opt.ContextTimeoutEnabled = true
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	gw.rdb = redis.NewClient(opt)
	if err := redisotel.InstrumentTracing(gw.rdb, redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
		return nil, err
	}
	if err := gatehouse.Preload(ctx, gw.rdb); err != nil {
		return nil, fmt.Errorf("redis at %s: %w", opt.Addr, err)
	}

	prefix := cfg.keyPrefix
	if prefix == "" {
		prefix = "demo:"
	}
	// Decisions wait at most 100ms for Redis; clients Redis just refused are refused again from a
	// local cache until the moment Redis gave, with no round trip.
	limOpts := []limiter.Option{limiter.WithKeyPrefix(prefix + "rl:"), limiter.WithTimeout(100 * time.Millisecond),
		limiter.WithDenyCache(10000)}
	switch cfg.failure {
	case "local", "":
		limOpts = append(limOpts, limiter.WithFailLocal(limiter.LocalFallback{MaxKeys: 10000}))
	case "open":
		limOpts = append(limOpts, limiter.WithFailOpen())
	case "closed":
		limOpts = append(limOpts, limiter.WithFailClosed(5*time.Second))
	case "error":
	default:
		return nil, fmt.Errorf("-on-redis-failure %q: want local, open, closed or error", cfg.failure)
	}
	if gw.lim, err = limiter.New(gw.rdb, limiter.TokenBucket, limOpts...); err != nil {
		return nil, err
	}
	if gw.store, err = session.NewStore(gw.rdb, session.WithKeyPrefix(prefix+"s:"),
		session.WithIdleTimeout(30*time.Minute), session.WithLifetime(12*time.Hour)); err != nil {
		return nil, err
	}

	gw.api = http.HandlerFunc(hello)
	if cfg.upstream != "" {
		u, err := url.Parse(cfg.upstream)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("-upstream %q: want a URL such as http://localhost:9000", cfg.upstream)
		}
		gw.api = httputil.NewSingleHostReverseProxy(u)
	}
	return gw, nil
}

// Close closes the Redis client and stops the stand-in.
func (gw *gateway) Close() {
	if gw.rdb != nil {
		gw.rdb.Close()
	}
	if gw.standIn != nil {
		gw.standIn.Close()
	}
}

// Handler returns the gateway: an OpenTelemetry HTTP span around each request, then sessions, then
// (for /api/) the rate limiter.
func (gw *gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", index)
	mux.HandleFunc("POST /login", gw.login)
	mux.HandleFunc("POST /logout", gw.logout)
	mux.HandleFunc("GET /me", gw.me)
	limit := limiter.Middleware(gw.lim, identity, nil, limiter.WithLimitsFor(gw.tier))
	mux.Handle("/api/", limit(gw.api))

	h := session.Middleware(gw.store, session.WithCookie(session.Cookie{Insecure: true}))(mux)
	return otelhttp.NewHandler(h, "gateway", otelhttp.WithSpanNameFormatter(spanName))
}

// spanName names a request's span by method and the first segment of its path (/api, /login, ...),
// never by the full path, which may hold identifiers.
func spanName(_ string, r *http.Request) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return r.Method + " /" + seg
}

// identity is what the API is limited by: the signed-in user, or else the client's address.
func identity(r *http.Request) string {
	if s, ok := session.FromContext(r.Context()); ok && s.UserID() != "" {
		return "user:" + s.UserID()
	}
	return "ip:" + limiter.ByRemoteIP(r)
}

// tier returns the limits for the request: the signed-in ones, or the anonymous ones.
func (gw *gateway) tier(r *http.Request) []limiter.Limit {
	if s, ok := session.FromContext(r.Context()); ok && s.UserID() != "" {
		return gw.signedIn
	}
	return gw.anonymous
}

func index(w http.ResponseWriter, _ *http.Request) {
	io.WriteString(w, `gatehouse demo gateway

  GET  /api/...   the rate-limited API: per client address, or per user once signed in;
                  every response has RateLimit-Policy and RateLimit, refusals Retry-After
  POST /login     sign in: form field user=<name>; sets the session cookie
  GET  /me        who you are, and your sessions
  POST /logout    sign out
`)
}

func hello(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"hello": "from the API", "path": r.URL.Path, "at": time.Now().UTC()})
}

func (gw *gateway) login(w http.ResponseWriter, r *http.Request) {
	user := strings.TrimSpace(r.FormValue("user"))
	if user == "" || len(user) > 64 {
		http.Error(w, "want a form field user of 1 to 64 characters", http.StatusBadRequest)
		return
	}
	s, _ := session.FromContext(r.Context())
	// A new token in the user's slot; the anonymous one stops working.
	if err := gw.store.Login(r.Context(), s, user); err != nil {
		log.Printf("login: %v", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

func (gw *gateway) logout(w http.ResponseWriter, r *http.Request) {
	s, _ := session.FromContext(r.Context())
	if err := gw.store.Destroy(r.Context(), s); err != nil && !errors.Is(err, session.ErrNotFound) {
		log.Printf("logout: %v", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (gw *gateway) me(w http.ResponseWriter, r *http.Request) {
	s, _ := session.FromContext(r.Context())
	user := s.UserID()
	if user == "" {
		writeJSON(w, http.StatusOK, map[string]any{"user": nil})
		return
	}
	list, err := gw.store.ListByUser(r.Context(), user)
	if err != nil {
		log.Printf("me: %v", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	type entry struct {
		Created  time.Time `json:"created"`
		LastSeen time.Time `json:"last_seen"`
		Current  bool      `json:"current"`
	}
	sessions := make([]entry, 0, len(list))
	for _, m := range list {
		sessions = append(sessions, entry{Created: m.Created, LastSeen: m.LastSeen, Current: m.Key == s.Key()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "sessions": sessions})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
