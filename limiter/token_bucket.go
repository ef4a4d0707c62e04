package limiter

// TokenBucket is a bucket of Burst tokens (Rate when Burst is 0) that gains Rate tokens per Period;
// each request takes its cost in tokens. It admits bursts up to the bucket's size and a steady rate
// after that, with no window edges. It is computed as GCRA: the state is a single timestamp per
// identifier and limit (about 90 bytes), which expires when the bucket is full again, so idle
// clients cost no memory. The refill interval, Period/Rate, is rounded up to a whole microsecond.
var TokenBucket = newAlgorithm("token_bucket", "tb", checkBucket, bucketArgs)

func checkBucket(l Limit) error {
	return checkProduct(l, "burst × refill interval in microseconds", l.Capacity(), interval(l))
}

// bucketArgs returns the bucket's capacity and its refill interval in microseconds.
func bucketArgs(l Limit) (int64, int64) { return l.Capacity(), interval(l) }

// interval returns Period/Rate in microseconds, rounded up.
func interval(l Limit) int64 {
	us := l.Period.Microseconds()
	return (us + l.Rate - 1) / l.Rate
}
