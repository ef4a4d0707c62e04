package limiter

// WithCoalescing makes decisions that many goroutines ask for at once share script calls: while a
// call is under way to a Redis node, the decisions that arrive for that node are gathered and sent
// together in the next call, which decides each of them as a call of its own would (the same Lua,
// the same exactness), independently: one decision's error, such as corrupt state, is its own. A
// decision made alone is sent at once, alone, as the very call made without this option. On a
// Cluster a call holds the decisions of one hash slot, and the calls for one master share a round
// trip.
//
// A caller whose context ends while its decision waits for a call returns at once with nothing
// sent; one whose decision is under way returns at once too, the decision made or not as the call
// goes (as for a single call). docs/runtime.md describes when calls are sent. It cannot be combined
// with WithAutoPipeline.
func WithCoalescing() Option { return optionFunc(func(c *config) { c.coalesce = true }) }
