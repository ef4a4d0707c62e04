package limiter

import (
	"fmt"
	"strconv"

	"github.com/gatehouse/gatehouse/internal/script"
)

// Algorithm is a rate-limiting algorithm: FixedWindow, SlidingWindow, SlidingLog or TokenBucket,
// each defined in its own file with what it keeps in Redis and which limits it computes exactly.
// docs/algorithms.md compares them; TokenBucket suits most APIs. The zero Algorithm is none of
// them, and New refuses it.
type Algorithm uint8

// String returns the algorithm's name, as spans and metrics give it: "fixed_window",
// "sliding_window", "sliding_log" or "token_bucket"; "Algorithm(n)" for a value that is none.
func (a Algorithm) String() string {
	if impl, ok := a.impl(); ok {
		return impl.name
	}
	return "Algorithm(" + strconv.Itoa(int(a)) + ")"
}

// impl returns what runs a, and false for a value that is no algorithm.
func (a Algorithm) impl() (*algorithm, bool) {
	if int(a) >= len(algorithms) || algorithms[a] == nil {
		return nil, false
	}
	return algorithms[a], true
}

// algorithms holds what runs each Algorithm, by its value.
var algorithms = [...]*algorithm{
	FixedWindow:   newAlgorithm(FixedWindow, "fixed_window", "fw", func(Limit) error { return nil }, 2, windowArgs),
	SlidingWindow: newAlgorithm(SlidingWindow, "sliding_window", "sw", checkSliding, 2, windowArgs),
	SlidingLog:    newAlgorithm(SlidingLog, "sliding_log", "sl", checkLog, 2, windowArgs),
	TokenBucket:   newAlgorithm(TokenBucket, "token_bucket", "tb", checkBucket, 3, bucketArgs),
}

// algorithm is what runs an Algorithm: its script, and how a limit becomes the script's arguments.
type algorithm struct {
	id     Algorithm
	name   string
	tag    string // the algorithm's part of a key
	script *script.Script
	batch  *script.Script                  // the script making many decisions in one call (coalescing)
	check  func(Limit) error               // what this algorithm needs of a limit beyond Limit.validate
	nargs  int                             // how many ARGV values a limit takes
	args   func(args []any, l Limit) []any // appends the limit's ARGV values to args
}

func newAlgorithm(id Algorithm, name, tag string, check func(Limit) error, nargs int, args func([]any, Limit) []any) *algorithm {
	s, ok := script.Lookup(name)
	batch, okBatch := script.Lookup(name + "_batch")
	if !ok || !okBatch {
		panic("limiter: no embedded script " + name + ".lua or " + name + "_batch.lua") // a broken build, caught by any test
	}
	if nargs > maxLimitArgs {
		panic("limiter: " + name + " takes more ARGV values per limit than argCache holds") // likewise
	}
	return &algorithm{id: id, name: name, tag: tag, script: s, batch: batch, check: check, nargs: nargs, args: args}
}

// windowArgs appends a window limit's ARGV values: the rate and the period in milliseconds.
func windowArgs(args []any, l Limit) []any { return append(args, l.Rate, l.Period.Milliseconds()) }

// maxExact is the largest integer the scripts compute with exactly: Lua numbers are doubles. Limits
// whose arithmetic would pass it are refused.
const maxExact = 1 << 50

func checkProduct(l Limit, what string, a, b int64) error {
	if a > maxExact/b {
		return fmt.Errorf("%w %v: %s too large to compute exactly", ErrInvalidLimit, l, what)
	}
	return nil
}
