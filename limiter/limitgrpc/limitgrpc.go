// Package limitgrpc limits gRPC calls with a gatehouse limiter: server interceptors for unary and
// streaming calls, each call decided before its handler runs.
//
// Every decided call carries the ratelimit-policy and ratelimit metadata, the gRPC spelling of the
// IETF draft fields that limithttp.Middleware sets over HTTP: as header metadata when the call is
// admitted, as trailers when it is refused. A refusal is a Trailers-Only response (nothing is sent
// before the status), the only form in which gRPC clients (grpc-go among them) read
// grpc-retry-pushback-ms; header metadata sent first would make them ignore it and not retry.
//
//   - A call refused for now ends with codes.ResourceExhausted, a google.rpc.RetryInfo detail
//     saying when to retry, and grpc-retry-pushback-ms, the same delay in milliseconds (rounded
//     up), which a client whose retry policy lists RESOURCE_EXHAUSTED waits before retrying.
//   - A call that can never be admitted (its cost is above a limit's capacity:
//     limiter.InfDuration) ends with codes.ResourceExhausted, grpc-retry-pushback-ms -1, which
//     tells such clients not to retry at all, and a google.rpc.QuotaFailure detail naming the
//     limit (QuotaId) and its capacity (QuotaValue), with no RetryInfo and no ratelimit trailer.
//   - A refusal that stands in for Redis ends with codes.Unavailable: limiter.FailClosed's
//     with its RetryInfo and pushback, limiter.FailLocal's for a cost above its share of the
//     capacity (Instances > 1) with neither, since Redis may admit it when it is back.
//
// A call the limiter cannot decide (Redis failed under limiter.FailError, the default failure
// policy, or an invalid limit) is logged (WithLogger) and ends with codes.Unavailable, saying
// nothing of the cause (WithErrorHandler).
//
// Limits in shadow mode (limiter.Limit.WithShadow, limiter.WithShadowMode) are decided and
// recorded, but clients are told nothing of them: they are in no metadata, and a call only they
// refuse goes on as if they did not exist.
//
// It is a package of its own so that programs serving only HTTP do not link gRPC.
package limitgrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/faillog"
	"github.com/gatehouse/gatehouse/internal/ratelimitfield"
	"github.com/gatehouse/gatehouse/limiter"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// KeyFunc returns the identifier a call is limited under, from its context (peer, metadata, an
// authenticated identity) and full method name. An empty identifier exempts the call.
type KeyFunc func(ctx context.Context, fullMethod string) string

// ByPeerIP limits each client address: the peer's IP without its port, IPv4 as "192.0.2.1" (also
// when it came IPv4-mapped), IPv6 as the /64 that holds it ("2001:db8:1:2::/64"), since a single
// host is commonly given a whole /64 and could otherwise take a fresh quota with every address. A
// peer that is not an IP address (a Unix socket) is its own identifier, and a call without a peer
// is "unknown", so that such calls share one quota rather than escape the limits. Behind a proxy
// the peer is the proxy: use ByClientIP, which reads the metadata your proxies set, and only from
// them; ByPeerIP is ByClientIP with no trusted proxy.
func ByPeerIP(ctx context.Context, _ string) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return clientip.Unknown
	}
	return peerOnly.Key(p.Addr.String(), nil)
}

// peerOnly is the resolver of ByPeerIP: no proxy trusted, IPv6 by /64.
var peerOnly, _ = clientip.New(nil, "", 0)

// ClientIP configures ByClientIP: where a call's client address is found when proxies (Envoy,
// a gRPC-aware load balancer) stand between it and the server.
type ClientIP struct {
	// TrustedProxies lists the proxies in front of the server, each a CIDR prefix ("10.0.0.0/8",
	// "2001:db8::/32") or a single address. The forwarding metadata is read only on calls from one
	// of them, and only as far as they vouch for it. None: the metadata is never read, and the
	// client is the peer.
	TrustedProxies []string
	// Header is the metadata the trusted proxies set: "x-forwarded-for" (the default; Envoy's) or
	// "forwarded" (RFC 7239), in any case. The other is never read.
	Header string
	// IPv6Prefix is how many leading bits of an IPv6 address make one client: 64 by default, since
	// a single host is commonly given a whole /64. 128 limits each address.
	IPv6Prefix int
}

// ByClientIP returns a KeyFunc that limits each client address found through the trusted proxies
// of c, as limithttp.ByClientIP does over HTTP: the forwarding metadata (its values in order, as
// one list) is read from the right, starting from the peer's address, each trusted proxy passing
// the turn to the entry it appended; the first address that is not a trusted proxy is the client,
// so a client cannot choose its identity by sending the metadata itself. An entry of a trusted
// proxy that names no address limits the call under that proxy. The identifier is an IPv4 address,
// or the IPv6 prefix of IPv6Prefix bits that holds the address ("2001:db8:1:2::/64"). A call
// without a peer is "unknown", as with ByPeerIP; a peer that is not an IP address (a Unix socket)
// is its own identifier.
//
// ByClientIP returns an error for an invalid prefix, header name or IPv6Prefix.
func ByClientIP(c ClientIP) (KeyFunc, error) {
	res, err := clientip.New(c.TrustedProxies, c.Header, c.IPv6Prefix)
	if err != nil {
		return nil, fmt.Errorf("limitgrpc: ByClientIP: %w", err)
	}
	key := strings.ToLower(res.Header())
	return func(ctx context.Context, _ string) string {
		p, ok := peer.FromContext(ctx)
		if !ok || p.Addr == nil {
			return clientip.Unknown
		}
		md, _ := metadata.FromIncomingContext(ctx)
		return res.Key(p.Addr.String(), md[key])
	}, nil
}

// Option configures the interceptors.
type Option interface{ apply(*config) }

type config struct {
	limitsFor func(ctx context.Context, fullMethod string) []limiter.Limit
	cost      func(ctx context.Context, fullMethod string) int64
	failed    func(ctx context.Context, fullMethod string, err error) error
	logger    *slog.Logger
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLimitsFor chooses the limits per call, for tiers or per-method limits; it replaces the limits
// given to the interceptor. Returning none exempts the call.
func WithLimitsFor(f func(ctx context.Context, fullMethod string) []limiter.Limit) Option {
	return optionFunc(func(c *config) { c.limitsFor = f })
}

// WithCost sets what a call costs (default 1). A cost below 1 is an error, handled by the error
// handler.
func WithCost(f func(ctx context.Context, fullMethod string) int64) Option {
	return optionFunc(func(c *config) { c.cost = f })
}

// WithErrorHandler sets what a call the limiter could not decide ends with (Redis failed under
// limiter.FailError, or the limits or cost were invalid): h returns the call's error, or nil to
// let the call go on. The error is logged first (see WithLogger). The default ends the call with
// codes.Unavailable, "rate limiter unavailable", saying nothing of the cause.
func WithErrorHandler(h func(ctx context.Context, fullMethod string, err error) error) Option {
	return optionFunc(func(c *config) { c.failed = h })
}

// WithLogger sets where the interceptors log (default: slog.Default(), as it is at each record; nil
// means the default). They log each call the limiter could not decide, before the error handler
// answers it: at Error, "limitgrpc: rate limit not decided", with the method and the error (at
// Debug when the client went away first). Failures of Redis, which under limiter.FailError fail
// every call while Redis is down, are logged at most once a second, the next record saying how
// many were not (suppressed). No record holds the identifier or metadata. A handler that drops
// records turns logging off: slog.New(slog.DiscardHandler). The failures the limiter's own failure
// policy stands in for are logged by the limiter (limiter.WithLogger).
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = logger })
}

// UnaryServerInterceptor limits unary calls with lim: each is decided under key against limits
// (all at once, in one script call, when there are several) before its handler runs.
func UnaryServerInterceptor(lim *limiter.Limiter, key KeyFunc, limits []limiter.Limit, opts ...Option) grpc.UnaryServerInterceptor {
	g := newGate(lim, key, limits, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := g.admit(ctx, info.FullMethod, grpc.SetHeader, grpc.SetTrailer); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor limits streaming calls with lim: each stream is one request, decided
// when it opens.
func StreamServerInterceptor(lim *limiter.Limiter, key KeyFunc, limits []limiter.Limit, opts ...Option) grpc.StreamServerInterceptor {
	g := newGate(lim, key, limits, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		setHeader := func(_ context.Context, md metadata.MD) error { return ss.SetHeader(md) }
		setTrailer := func(_ context.Context, md metadata.MD) error { ss.SetTrailer(md); return nil }
		if err := g.admit(ss.Context(), info.FullMethod, setHeader, setTrailer); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

type gate struct {
	lim    *limiter.Limiter
	key    KeyFunc
	limits []limiter.Limit
	fields ratelimitfield.Fields
	policy string // the ratelimit-policy metadata of limits
	log    *faillog.Log
	config
}

func newGate(lim *limiter.Limiter, key KeyFunc, limits []limiter.Limit, opts []Option) *gate {
	g := &gate{lim: lim, key: key, limits: append([]limiter.Limit(nil), limits...), fields: ratelimitfield.For(lim),
		config: config{failed: unavailable}}
	for _, o := range opts {
		o.apply(&g.config)
	}
	g.policy = g.fields.Policy(g.limits)
	g.log = &faillog.Log{Logger: g.logger, Msg: "limitgrpc: rate limit not decided", Interval: time.Second}
	return g
}

// unavailable is the default error handler.
func unavailable(context.Context, string, error) error {
	return status.Error(codes.Unavailable, "rate limiter unavailable")
}

// admit decides the call, sets its metadata, and returns the status error of a refusal or failure.
func (g *gate) admit(ctx context.Context, method string, setHeader, setTrailer func(context.Context, metadata.MD) error) error {
	limits := g.limits
	policy := g.policy
	if g.limitsFor != nil {
		limits = g.limitsFor(ctx, method)
		policy = g.fields.Policy(limits)
	}
	id := g.key(ctx, method)
	if id == "" || len(limits) == 0 {
		return nil
	}
	n := int64(1)
	if g.cost != nil {
		n = g.cost(ctx, method)
	}
	var res limiter.Result
	var err error
	if len(limits) == 1 {
		res, err = g.lim.AllowN(ctx, id, limits[0], n)
	} else {
		res, err = g.lim.AllowAll(ctx, id, n, limits...)
	}
	if err != nil {
		gone := ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
		g.log.Failure(ctx, err, gone, slog.String("method", method))
		return g.failed(ctx, method, err)
	}
	md := metadata.MD{}
	if policy != "" {
		md.Append("ratelimit-policy", policy)
	}
	if state := g.fields.State(res); state != "" {
		md.Append("ratelimit", state)
	}
	if res.Allowed {
		if len(md) > 0 {
			// The metadata is informative: a call whose header was already sent still goes on.
			_ = setHeader(ctx, md)
		}
		return nil
	}
	never := res.RetryAfter == limiter.InfDuration
	var st *status.Status
	var detail protoadapt.MessageV1
	switch {
	case res.Source == limiter.SourceFailClosed, never && res.Source == limiter.SourceLocal:
		st = status.New(codes.Unavailable, "rate limiter unavailable")
	case never:
		st = status.New(codes.ResourceExhausted, "rate limit exceeded: the call costs more than the limit can ever admit")
		md.Append("grpc-retry-pushback-ms", "-1")
		detail = quotaFailure(res, n)
	default:
		st = status.New(codes.ResourceExhausted, "rate limit exceeded")
	}
	if !never {
		ms := (res.RetryAfter + time.Millisecond - 1) / time.Millisecond // rounded up
		md.Append("grpc-retry-pushback-ms", strconv.FormatInt(int64(ms), 10))
		detail = &errdetails.RetryInfo{RetryDelay: durationpb.New(res.RetryAfter)}
	}
	if detail != nil {
		if d, err := st.WithDetails(detail); err == nil {
			st = d
		}
	}
	_ = setTrailer(ctx, md)
	return st.Err()
}

// quotaFailure describes the limits whose capacity the cost n exceeds: each by its name (the
// limit's String() without one) and capacity, never by the identifier.
func quotaFailure(res limiter.Result, n int64) *errdetails.QuotaFailure {
	all := res.All
	if all == nil {
		all = []limiter.Result{res}
	}
	q := &errdetails.QuotaFailure{}
	for _, r := range all {
		if r.Allowed || r.RetryAfter != limiter.InfDuration {
			continue
		}
		name := ratelimitfield.Name(r.Limit)
		q.Violations = append(q.Violations, &errdetails.QuotaFailure_Violation{
			Description: "a call costing " + strconv.FormatInt(n, 10) + " exceeds the capacity of " + strconv.Quote(name) +
				", " + strconv.FormatInt(r.Limit.Capacity(), 10) + ": it can never be admitted",
			QuotaId:    name,
			QuotaValue: r.Limit.Capacity(),
		})
	}
	return q
}
