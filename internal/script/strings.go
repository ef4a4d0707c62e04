package script

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RunStrings is Run for a script whose reply is an array of strings and integers: it returns the
// elements as strings (an integer in decimal), read straight into a []string, without the
// interface value Run's reply boxes each element in (two allocations per string). A reply that
// is not such an array, or an error reply, is an error. The session store reads whole records
// this way on every load.
func (s *Script) RunStrings(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) ([]string, error) {
	if err := checkSlots(keys); err != nil {
		return nil, s.wrap(err)
	}
	cmd := s.stringsCmd(ctx, keys, args)
	err := c.Process(ctx, cmd)
	if isNoScript(err) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		cmd = s.stringsCmd(ctx, keys, args)
		err = c.Process(ctx, cmd)
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, s.wrap(err)
	}
	return cmd.Val(), nil
}

// stringsCmd returns the EVALSHA of a call whose reply is read as strings.
func (s *Script) stringsCmd(ctx context.Context, keys []string, args []any) *redis.StringSliceCmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, argEvalSha, s.shaArg, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return redis.NewStringSliceCmd(ctx, append(a, args...)...)
}
