package limiter

// Decisions are coalesced by default: many goroutines' decisions share script calls. While a call
// is under way to a Redis node, the decisions that arrive for that node are gathered and sent
// together in the next call, which decides each of them as a call of its own would (the same Lua,
// the same exactness), independently: one decision's error, such as corrupt state, is its own. A
// decision made alone is sent at once, alone, as the very call made by WithoutCoalescing. On a
// Cluster a call holds the decisions of one hash slot, and the calls for one master share a round
// trip. A node near the client (loopback, the same rack) has at most two calls under way; one far
// away, more (up to 16), so that distance adds no wait.
//
// A caller whose context ends while its decision waits for a call returns at once with nothing
// sent; one whose decision is under way returns at once too, the decision made or not as the call
// goes (as for a single call). docs/runtime.md describes when calls are sent.

// WithoutCoalescing sends each decision in a script call of its own, in a round trip of its own:
// what a decision costs then does not depend on others. Many concurrent decisions cost Redis
// and the client more (docs/benchmarks.md: at 64 goroutines on loopback, coalescing makes 2.3-2.6
// times as many decisions per second).
func WithoutCoalescing() Option { return optionFunc(func(c *config) { c.coalesce = -1 }) }

// WithCoalescing asks for coalescing, the default. It cannot be combined with WithAutoPipeline.
//
// Deprecated: decisions are coalesced unless WithoutCoalescing or WithAutoPipeline is given.
func WithCoalescing() Option { return optionFunc(func(c *config) { c.coalesce = 1 }) }
