package limiter

// FixedWindow counts requests in windows of Period aligned to the Unix epoch (a one-minute window
// runs from :00 to :00 on the server's clock). It admits Rate requests per window. It is the
// cheapest algorithm, but a client can send Rate requests at the end of one window and Rate more at
// the start of the next. One key per identifier and limit: about 110 bytes in Redis
// (MEMORY USAGE, Redis 7.0).
var FixedWindow = newAlgorithm("fixed_window", "fw", checkWindow, windowArgs)

func checkWindow(l Limit) error {
	return checkProduct(l, "rate × period in milliseconds", l.Rate, l.Period.Milliseconds())
}

func windowArgs(l Limit) (int64, int64) { return l.Rate, l.Period.Milliseconds() }
