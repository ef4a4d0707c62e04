package limiter

import "fmt"

// SlidingWindow approximates the count over the last Period from two epoch-aligned windows: the
// current one, plus the previous one weighted by the part of it still inside the sliding span.
// It smooths the burst FixedWindow allows at window edges at the same cost (one key of about
// 120 bytes). The estimate assumes the previous window's requests were spread evenly;
// docs/algorithms.md states how far off that can be.
//
// It weighs counts by milliseconds of the window, so Rate × Period in milliseconds must be at
// most 2^50 (PerSecond(1_125_899_906_842), 13,031,248 per day); beyond, ErrInvalidLimit.
const SlidingWindow Algorithm = 2

// checkSliding bounds Rate × Period in milliseconds, by which the sliding window weighs counts.
func checkSliding(l Limit) error {
	return checkProduct(l, "rate × period in milliseconds", l.Rate, l.Period.Milliseconds())
}

// MaxSlidingLogRate is the largest Rate SlidingLog accepts: it keeps one sorted-set member per
// admitted request, so its memory grows with the rate.
const MaxSlidingLogRate = 10000

// SlidingLog keeps the time of every admitted request of the last Period in a sorted set, and
// so admits exactly Rate requests in any span of Period. Its memory is bounded by the limit
// (about 36 bytes per request counted while the set has at most 128 members, about 115 beyond,
// where Redis switches the sorted set from a listpack to a skiplist), so it is meant for small
// limits: Rate is at most MaxSlidingLogRate.
const SlidingLog Algorithm = 3

// checkLog bounds the sliding log's Rate: it keeps one sorted-set member per request.
func checkLog(l Limit) error {
	if l.Rate > MaxSlidingLogRate {
		return fmt.Errorf("%w %v: the sliding log keeps one entry per request, at most %d", ErrInvalidLimit, l, MaxSlidingLogRate)
	}
	return nil
}
