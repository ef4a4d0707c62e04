package contenders

// Everything the harness calls of gatehouse is in this file, so that changes to its API are
// followed here alone.

import (
	"context"
	"net/http"

	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
)

// gatehouseAlgorithms are the limiter's algorithms, by the name used in contender IDs.
var gatehouseAlgorithms = []struct {
	tag, name string
	alg       limiter.Algorithm
}{
	{"tb", "token bucket", limiter.TokenBucket},
	{"fw", "fixed window", limiter.FixedWindow},
	{"sw", "sliding window", limiter.SlidingWindow},
	{"sl", "sliding log", limiter.SlidingLog},
}

// gatehouseLimit returns the limit a gatehouse algorithm is given.
func gatehouseLimit(alg limiter.Algorithm, mode harness.LimitMode) limiter.Limit {
	switch alg {
	case limiter.TokenBucket:
		g := gcraLimit(mode)
		return limiter.Per(g.rate, g.period).WithBurst(g.burst)
	case limiter.SlidingLog:
		w := logLimit(mode)
		return limiter.Per(w.limit, w.period)
	default:
		w := windowLimit(mode)
		return limiter.Per(w.limit, w.period)
	}
}

// How a gatehouse limiter sends its decisions.
type sending int

const (
	oneCallEach  sending = iota // WithoutCoalescing: one script call, one round trip, per decision
	autoPipeline                // WithAutoPipeline
	coalesced                   // the default: concurrent decisions share script calls
)

// newGatehouseLimiter returns a constructor of a gatehouse limiter with alg, its decisions sent
// as send says.
func newGatehouseLimiter(alg limiter.Algorithm, send sending) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		var opts []limiter.Option
		switch send {
		case oneCallEach:
			opts = append(opts, limiter.WithoutCoalescing())
		case autoPipeline:
			opts = append(opts, limiter.WithAutoPipeline())
		}
		lim, err := limiter.New(env.Client, alg, opts...)
		if err != nil {
			return nil, err
		}
		limit := gatehouseLimit(alg, env.Limits)
		keys := keyNames(env)
		return decisions(func(ctx context.Context, k int) (bool, error) {
			res, err := lim.Allow(ctx, keys[k], limit)
			return res.Allowed, err
		}), nil
	}
}

// newGatehouseSessions returns gatehouse's session middleware over a store in env, with the
// default touch on read.
func newGatehouseSessions(ctx context.Context, env harness.Env) (*harness.Instance, error) {
	st, err := session.NewStore(env.Client, session.WithIdleTimeout(idleTimeout), session.WithLifetime(lifetime))
	if err != nil {
		return nil, err
	}
	h := session.Middleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := session.FromContext(r.Context())
		if !ok {
			http.Error(w, "no session", http.StatusInternalServerError)
			return
		}
		switch mode(r) {
		case create:
			for _, a := range payload {
				if err := s.Put(a.name, a.value); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
		case write:
			if err := s.Put("visits", visit()); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		respond(w, s.GetString("user"))
	}))
	return sessionInstance(ctx, env, h, "session")
}
