package limiter

import (
	"fmt"

	"github.com/gatehouse/gatehouse/internal/script"
)

// Algorithm is a rate-limiting algorithm: FixedWindow, SlidingWindow, SlidingLog or TokenBucket.
// docs/algorithms.md compares them; TokenBucket suits most APIs.
type Algorithm struct {
	name   string
	tag    string // the algorithm's part of a key
	script *script.Script
	batch  *script.Script                  // the script making many decisions in one call (WithCoalescing)
	check  func(Limit) error               // what this algorithm needs of a limit beyond Limit.validate
	nargs  int                             // how many ARGV values a limit takes
	args   func(args []any, l Limit) []any // appends the limit's ARGV values to args
}

// String returns the algorithm's name, such as "token_bucket".
func (a *Algorithm) String() string { return a.name }

func newAlgorithm(name, tag string, check func(Limit) error, nargs int, args func([]any, Limit) []any) *Algorithm {
	s, ok := script.Lookup(name)
	batch, okBatch := script.Lookup(name + "_batch")
	if !ok || !okBatch {
		panic("limiter: no embedded script " + name + ".lua or " + name + "_batch.lua") // a broken build, caught by any test
	}
	return &Algorithm{name: name, tag: tag, script: s, batch: batch, check: check, nargs: nargs, args: args}
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
