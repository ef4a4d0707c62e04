package limiter

import (
	"fmt"
	"time"
)

// TokenBucket is a bucket of Burst tokens (Rate when Burst is 0) that gains Rate tokens per
// Period; each request takes its cost in tokens. It admits bursts up to the bucket's size and a
// steady rate after that, with no window edges. The state is one short string per identifier
// and limit (about 135 bytes), which expires when the bucket is full again, so idle clients
// cost no memory.
//
// It counts exactly, in fractions of a token: PerSecond(10_000_000) holds exactly 1,000,000
// tokens 100 ms after being emptied. That needs Capacity × Period in µs ÷ gcd(Rate, Period in
// µs) to be at most 2^52, and the bucket to refill from empty within MaxPeriod; other limits
// are refused with ErrInvalidLimit. So every rate up to 4,503,599,627 per second is exact with
// Burst = Rate (75 million per minute, 1.25 million per hour, 52,000 per day), and more when
// the rate divides the period evenly: PerSecond(4_503_599_627_000_000), a multiple of a
// million, is the largest per-second rate.
const TokenBucket Algorithm = 4

// maxBucket bounds a bucket's capacity in its units of 1/p token: twice it is still exact.
const maxBucket = 1 << 52

// checkBucket refuses the limits the token bucket cannot count exactly (see TokenBucket).
func checkBucket(l Limit) error {
	r, p := bucketUnits(l)
	c := l.Capacity()
	if c > maxBucket/p {
		return fmt.Errorf("%w %v: capacity × period in µs / gcd(rate, period in µs) is past 2^52, too large to count exactly", ErrInvalidLimit, l)
	}
	if full := (c*p + r - 1) / r; full > int64(MaxPeriod/time.Microsecond) {
		return fmt.Errorf("%w %v: the bucket would take %v to refill, more than MaxPeriod", ErrInvalidLimit, l, time.Duration(full)*time.Microsecond)
	}
	return nil
}

// bucketArgs appends the bucket's ARGV values: its capacity, and its units r and p.
func bucketArgs(args []any, l Limit) []any {
	r, p := bucketUnits(l)
	return append(args, l.Capacity(), r, p)
}

// bucketUnits returns the units the token bucket counts in: tokens in 1/p, of which the bucket gains
// r per microsecond. r/p is Rate per Period in µs, reduced by their gcd.
func bucketUnits(l Limit) (r, p int64) {
	us := l.Period.Microseconds()
	g := gcd(l.Rate, us)
	return l.Rate / g, us / g
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
