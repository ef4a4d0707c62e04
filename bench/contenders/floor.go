package contenders

// The floors of coalescing: gatehouse's coalescer (internal/coalesce, what a coalescing limiter sends
// through) carrying scripts that decide nothing, so that the harness measures in the same run what
// any coalesced algorithm could reach at best on this machine.

import (
	"context"

	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/gatehouse/gatehouse/internal/coalesce"
	"github.com/gatehouse/gatehouse/internal/script"
)

// floorGetSet reads and writes each decision's key, as every exact algorithm must (a GET of its
// state, a SET of the new state with PXAT, 29 bytes as the token bucket's), at the server's TIME
// read once per call, and answers a token bucket's reply for each: an admission, packed as
// lib/batch.lua packs it. Nothing is decided.
const floorGetSet = `
local t = redis.call('TIME')
local px = string.format('%d', t[1] * 1000 + 3600000)
local rep = struct.pack('>BHddddd', 0, 5, 1, 1, 999, 0, 0)
local out = {}
for i = 1, #KEYS do
  redis.pcall('GET', KEYS[i])
  redis.pcall('SET', KEYS[i], '0123456789abcdefghijklmnopqrs', 'PXAT', px)
  out[i] = rep
end
return table.concat(out)
`

// floorGetSetOne is floorGetSet for a call of one decision (a lone caller's).
const floorGetSetOne = `
local t = redis.call('TIME')
redis.pcall('GET', KEYS[1])
redis.pcall('SET', KEYS[1], '0123456789abcdefghijklmnopqrs', 'PXAT', string.format('%d', t[1] * 1000 + 3600000))
return {1, 1, 999, 0, 0}
`

// floorNone touches no key: what is left is the coalescer's work, the round trips and the calls'
// arguments and replies.
const floorNone = `
local rep = struct.pack('>BHddddd', 0, 5, 1, 1, 999, 0, 0)
local out = {}
for i = 1, #KEYS do out[i] = rep end
return table.concat(out)
`

const floorNoneOne = `return {1, 1, 999, 0, 0}`

// newCoalescedFloor returns a constructor of a coalescer carrying the scripts single (a call of
// one decision) and batch (a call of several), sent the token bucket's arguments.
func newCoalescedFloor(name, single, batch string) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		one, many := script.New(name, single), script.New(name+"_batch", batch)
		for _, s := range []*script.Script{one, many} {
			if err := s.Load(ctx, env.Client); err != nil {
				return nil, err
			}
		}
		b := coalesce.New(env.Client, one, many, coalesce.Options{})
		g := gcraLimit(env.Limits)
		// The token bucket's ARGV: cost, flags, now (the server's), burst, r, p.
		args := []any{int64(1), "0", int64(0), g.burst, int64(1), g.period.Microseconds() / g.rate}
		names := keyNames(env)
		keys := make([][]string, len(names))
		for i, n := range names {
			keys[i] = []string{n}
		}
		return decisions(func(ctx context.Context, k int) (bool, error) {
			var reply [5]int64
			r, err := b.Do(ctx, keys[k], args, reply[:0])
			return err == nil && len(r) == 5 && r[0] == 1, err
		}), nil
	}
}
