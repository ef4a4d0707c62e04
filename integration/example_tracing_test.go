package integration

import (
	"context"
	"log"

	"github.com/gatehouse/gatehouse"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis-level spans from redisotel under gatehouse's own, without leaking keys, session hashes or
// payloads: statements off, no handshake commands that fail on older servers, scripts preloaded so
// that no NOSCRIPT error span appears.
func ExamplePreload_tracing() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{
		Addr:                     "localhost:6379",
		DisableIdentity:          true, // no CLIENT SETINFO: an error span on Redis before 7.2
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	if err := redisotel.InstrumentTracing(rdb,
		redisotel.WithDBStatement(false),   // on by default: every key and argument in db.statement
		redisotel.WithCallerEnabled(false), // a runtime.Callers per command otherwise
	); err != nil {
		log.Fatal(err)
	}
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		log.Fatal(err)
	}
}
