-- sliding_log_batch.lua: many sliding-log decisions in one call, each independent of the others.
--
-- Each decision is exactly what sliding_log.lua decides for one call (the same code, the part
-- lib/sliding_log): one or more limits of one identifier, all or nothing, with the same state and
-- guarantees. Decisions are made in order, so two on one key see each other. One decision's error
-- (corrupt state, a key of another type, a refused write) is its reply alone: the others are made
-- as if it were not there. The server's TIME is read once for the whole call.
--
-- KEYS      every decision's keys, one per limit (sliding_log.lua's KEYS), decision after decision.
--           On a Cluster, every key of one call is in one slot (the caller groups decisions by
--           slot); on a single server they may be in any.
-- ARGV      t, how many distinct requests the decisions make; then each request: m (how many
--           limits, >= 1), then sliding_log.lua's ARGV for it: cost, flags, now ("0" for the
--           server's TIME), then the rate and the window (ms) per limit; then, per decision, its request (1 to
--           t). Decisions alike, most of a busy call's, share one request.
-- Reply     one string: per decision, in order, sliding_log.lua's reply for it or its error
--           reply (CORRUPTSTATE <i>, WRONGTYPE ..., OOM ...), packed as lib/batch describes.

--#include lib/sliding_log
--#include lib/batch

return batch(slog, 2)
