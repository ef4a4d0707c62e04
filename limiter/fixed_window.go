package limiter

// FixedWindow counts requests in windows of Period aligned to the Unix epoch (a one-minute
// window runs from :00 to :00 on the server's clock). It admits Rate requests per window. It is
// the cheapest algorithm, but a client can send Rate requests at the end of one window and Rate
// more at the start of the next. One key per identifier and limit: about 120 bytes in Redis
// (MEMORY USAGE, Redis 7.0).
//
// It only adds counts, so it takes every rate up to MaxRate, with any period.
const FixedWindow Algorithm = 1
