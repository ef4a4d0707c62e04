// Package limiter is a rate limiter over Redis: fixed window, sliding window (weighted counter),
// sliding log and token bucket (GCRA).
//
// Every decision is made atomically by one Lua script timed by the Redis server's clock, so any
// number of processes that share a Redis enforce one limit exactly, whatever their own clocks say.
// Decisions that many goroutines ask for at once share script calls (coalescing, the default;
// WithoutCoalescing sends each in a call of its own). Limits are values passed with each call:
//
//	lim, err := limiter.New(rdb, limiter.TokenBucket)
//	...
//	res, err := lim.Allow(ctx, "user:42", limiter.PerSecond(10).WithBurst(20))
//	if err != nil {
//		// the limit is invalid, or Redis failed (unless a failure policy decides then)
//	}
//	if !res.Allowed {
//		// refuse, and tell the client to come back after res.RetryAfter
//	}
//
// # Semantics shared by every algorithm
//
//   - A denied request changes nothing: it is not counted. A client that keeps retrying while
//     denied is admitted as soon as the limit allows, and never locks itself out.
//   - A cost larger than the limit's capacity can never be admitted: the Result says so with
//     RetryAfter == InfDuration, and WaitN returns an error at once.
//   - RetryAfter and ResetAfter are exact to the microsecond and never early.
//   - Every key written gets its expiry in the same script; idle identifiers cost no memory.
//   - Invalid limits, costs and keys are refused with ErrInvalidLimit, ErrInvalidCost and
//     ErrInvalidKey before Redis is asked.
//   - AllowAll checks several limits (10 per second and 1000 per hour) and counts the request
//     against all of them or none, atomically.
//
// # When Redis fails
//
// By default a decision Redis could not make is an error (FailError). WithFailurePolicy sets one
// policy in its place: FailOpen admits such requests, FailClosed refuses them and FailLocal decides
// them with a bounded in-process limiter, with a nil error and a Result whose Source says so and
// whose Err holds the failure; either way the failure is on the span, in the decisions metric and
// in the log (WithLogger). WithTimeout bounds how long a decision waits for Redis, and after a
// failure Redis is left alone for a cooldown (WithCooldown). WithDenyCache refuses clients that
// Redis just refused again without a round trip, until the moment Redis gave.
//
// # Transports
//
// Package limithttp has the net/http middleware, which sets the IETF draft RateLimit-Policy and
// RateLimit fields (and, as options, the legacy X-RateLimit fields and RFC 9457 problem details),
// and finds the client behind trusted proxies (limithttp.ByClientIP). Package limitgrpc, a module
// of its own so that programs serving only HTTP do not require gRPC, has the gRPC server
// interceptors. Neither tells clients of limits in shadow mode.
//
// # Keys
//
// A limit's state lives under "<prefix>{<identifier>}:<algorithm>:<limit>". The identifier is the
// hash tag, so all the keys of one identifier are in one cluster slot and different identifiers
// spread over the cluster. Identifiers may hold any bytes: '{', '}' and '%' are escaped.
package limiter
