package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

type config struct {
	addr           string
	redisURL       string        // "" for the embedded stand-in
	upstream       string        // "" for the built-in API
	failure        string        // local (default), open, closed or error
	keyPrefix      string        // of every key the gateway writes (default "demo:")
	connectTimeout time.Duration // how long to wait for Redis at start-up (0: defaultConnectTimeout)
	logger         *slog.Logger  // nil: slog.Default()

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

// log returns the logger the gateway writes to.
func (cfg config) log() *slog.Logger {
	if cfg.logger != nil {
		return cfg.logger
	}
	return slog.Default()
}

// connectWithin returns how long to wait for Redis at start-up.
func (cfg config) connectWithin() time.Duration {
	if cfg.connectTimeout == 0 {
		return defaultConnectTimeout
	}
	return cfg.connectTimeout
}

// failurePolicy returns the -on-redis-failure value, "local" when unset.
func (cfg config) failurePolicy() string {
	if cfg.failure == "" {
		return "local"
	}
	return cfg.failure
}

// check validates the flag values, before anything is started.
func (cfg config) check() error {
	if _, err := cfg.limiterPolicy(); err != nil {
		return err
	}
	if cfg.connectTimeout < 0 {
		return fmt.Errorf("-connect-timeout %v: want a positive duration, such as 5s", cfg.connectTimeout)
	}
	if cfg.redisURL != "" {
		if _, err := parseRedisURL(cfg.redisURL); err != nil {
			return err
		}
	}
	if cfg.upstream != "" {
		if _, err := parseUpstream(cfg.upstream); err != nil {
			return err
		}
	}
	return nil
}

// limiterPolicy returns the limiter's failure policy for -on-redis-failure.
func (cfg config) limiterPolicy() (limiter.FailurePolicy, error) {
	switch cfg.failurePolicy() {
	case "local":
		return limiter.FailLocal(limiter.LocalFallback{MaxKeys: 10000}), nil
	case "open":
		return limiter.FailOpen(), nil
	case "closed":
		return limiter.FailClosed(5 * time.Second), nil
	case "error":
		return limiter.FailError(), nil
	}
	return limiter.FailError(), fmt.Errorf("-on-redis-failure %q: want local, open, closed or error", cfg.failure)
}

// parseRedisURL parses -redis. Its errors never repeat the URL, which may hold a password.
func parseRedisURL(s string) (*redis.Options, error) {
	opt, err := redis.ParseURL(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL
		}
		return nil, fmt.Errorf("-redis: want a URL such as redis://localhost:6379/0 or redis://:password@host:port/db: %w", err)
	}
	return opt, nil
}

// parseUpstream parses -upstream.
func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-upstream %q: want a URL such as http://localhost:9000", s)
	}
	return u, nil
}

type gateway struct {
	log       *slog.Logger
	rdb       *redis.Client
	standIn   *standIn // nil with a real Redis
	redisName string
	lim       *limiter.Limiter
	store     *session.Store
	api       http.Handler

	anonymous, signedIn []limiter.Limit
}

// newGateway connects to Redis (or starts the stand-in) and builds the limiter and the session
// store. It gives up on a Redis that has not answered within cfg.connectTimeout.
func newGateway(ctx context.Context, cfg config) (*gateway, error) {
	gw := &gateway{log: cfg.log(), anonymous: cfg.anonymous, signedIn: cfg.signedIn}
	if gw.anonymous == nil {
		gw.anonymous = anonymous
	}
	if gw.signedIn == nil {
		gw.signedIn = signedIn
	}
	if err := gw.start(ctx, cfg); err != nil {
		gw.Close()
		return nil, err
	}
	return gw, nil
}

// start is newGateway's work; on error, the caller closes what it started.
func (gw *gateway) start(ctx context.Context, cfg config) error {
	var opt *redis.Options
	var err error
	if cfg.redisURL == "" {
		gw.log.Info("starting the embedded Redis stand-in (miniredis)")
		if gw.standIn, err = startStandIn(); err != nil {
			return fmt.Errorf("starting the embedded Redis stand-in: %w", err)
		}
		opt = &redis.Options{Addr: gw.standIn.Addr()}
		gw.redisName = "embedded stand-in (miniredis) at " + gw.standIn.Addr()
	} else {
		if opt, err = parseRedisURL(cfg.redisURL); err != nil {
			return err
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
		return err
	}
	if err := gw.connect(ctx, opt.Addr, cfg.connectWithin()); err != nil {
		return err
	}

	prefix := cfg.keyPrefix
	if prefix == "" {
		prefix = "demo:"
	}
	// Decisions wait at most 100ms for Redis; clients Redis just refused are refused again from a
	// local cache until the moment Redis gave, with no round trip. When Redis fails, the failure
	// policy decides, and the limiter logs the failure (at most once per cooldown, a second).
	policy, err := cfg.limiterPolicy()
	if err != nil {
		return err
	}
	if gw.lim, err = limiter.New(gw.rdb, limiter.TokenBucket, limiter.WithKeyPrefix(prefix+"rl:"),
		limiter.WithTimeout(100*time.Millisecond), limiter.WithDenyCache(10000),
		limiter.WithFailurePolicy(policy), limiter.WithLogger(gw.log)); err != nil {
		return err
	}
	// Session operations wait at most a second for Redis: past it the middleware answers 503.
	if gw.store, err = session.NewStore(gw.rdb, session.WithKeyPrefix(prefix+"s:"), session.WithTimeout(time.Second),
		session.WithIdleTimeout(30*time.Minute), session.WithLifetime(12*time.Hour)); err != nil {
		return err
	}

	gw.api = http.HandlerFunc(hello)
	if cfg.upstream != "" {
		u, err := parseUpstream(cfg.upstream)
		if err != nil {
			return err
		}
		gw.api = httputil.NewSingleHostReverseProxy(u)
	}
	return nil
}

// connect checks that Redis answers and loads gatehouse's scripts into it, giving up after
// timeout, or as soon as ctx ends.
func (gw *gateway) connect(ctx context.Context, addr string, timeout time.Duration) error {
	if gw.standIn == nil {
		gw.log.Info("connecting to Redis at " + addr)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// go-redis applies a context's deadline to a call, but not its cancellation: a call waiting
	// for a silent server is left behind here, and ends when Close closes the client.
	errc := make(chan error, 1)
	go func() {
		err := gw.rdb.Ping(cctx).Err()
		if err == nil {
			err = gatehouse.Preload(cctx, gw.rdb)
		}
		errc <- err
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		return fmt.Errorf("connecting to Redis at %s: %w", addr, context.Cause(ctx))
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("connecting to Redis at %s: no answer within %v: %w", addr, timeout, err)
	}
	return fmt.Errorf("connecting to Redis at %s: %w", addr, err)
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

// Handler returns the gateway: an OpenTelemetry HTTP span around each request, then the request
// log, then sessions, then (for /api/) the rate limiter.
func (gw *gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, routed(pattern, h)) }
	handle("GET /{$}", http.HandlerFunc(index))
	handle("POST /login", http.HandlerFunc(gw.login))
	handle("POST /logout", http.HandlerFunc(gw.logout))
	handle("GET /me", http.HandlerFunc(gw.me))
	// The middleware logs the requests the limiter could not decide (with -on-redis-failure=error,
	// Redis failed), at most once a second while Redis stays down.
	limit := limithttp.Middleware(gw.lim, identity, nil, limithttp.WithLimitsFor(gw.tier),
		limithttp.WithErrorHandler(limiterFailed), limithttp.WithLogger(gw.log))
	handle("/api/", limit(gw.api))

	// The session middleware logs the requests it answers 500 or 503 itself.
	h := session.Middleware(gw.store, session.WithCookie(session.Cookie{Insecure: true}), session.WithLogger(gw.log))(mux)
	return observe(gw.log, h)
}

// limiterFailed answers a request the limiter could not decide (with -on-redis-failure=error,
// Redis failed) 503 Service Unavailable, with Retry-After.
func limiterFailed(w http.ResponseWriter, _ *http.Request, _ error) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
}

// identity is what the API is limited by: the signed-in user, or else the client's address.
func identity(r *http.Request) string {
	if s, ok := session.FromContext(r.Context()); ok && s.UserID() != "" {
		return "user:" + s.UserID()
	}
	return "ip:" + limithttp.ByRemoteIP(r)
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
		gw.log.ErrorContext(r.Context(), "login failed", "error", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

func (gw *gateway) logout(w http.ResponseWriter, r *http.Request) {
	s, _ := session.FromContext(r.Context())
	if err := gw.store.Destroy(r.Context(), s); err != nil && !errors.Is(err, session.ErrNotFound) {
		gw.log.ErrorContext(r.Context(), "logout failed", "error", err)
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
		gw.log.ErrorContext(r.Context(), "listing the user's sessions failed", "error", err)
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
