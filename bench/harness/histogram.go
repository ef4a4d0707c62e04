package harness

import (
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into 2^subBits buckets, so a
// recorded latency is known to within 1/2^subBits (1.6%) of its value.
const (
	subBits = 6
	sub     = 1 << subBits
	maxNs   = 1 << 40 // about 18 minutes: longer operations are counted here
)

var nBuckets = bucketOf(maxNs) + 1

// Histogram counts operation latencies in nanoseconds in log-linear buckets. Recording allocates
// nothing and takes no lock: each worker has its own, merged after the round.
type Histogram struct {
	counts []uint64
	total  uint64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{counts: make([]uint64, nBuckets)} }

func bucketOf(v uint64) int {
	if v < sub {
		return int(v)
	}
	if v > maxNs {
		v = maxNs
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*sub + int(v>>uint(shift)) - sub
}

// bucketMid returns the middle of bucket i's range of values.
func bucketMid(i int) float64 {
	if i < sub {
		return float64(i)
	}
	shift := i/sub - 1
	low := uint64(i%sub+sub) << uint(shift)
	return float64(low) + float64(uint64(1)<<uint(shift))/2
}

// Record counts one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Count returns how many latencies were recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Quantile returns the latency below which a fraction q of the recorded ones lie (q in [0, 1]),
// or 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return time.Duration(bucketMid(len(h.counts) - 1))
}
