// Package containers registers the "testcontainers" backend of internal/redistest: a Redis server
// in a container, run through testcontainers-go. The integration module's tests import it, so that
// gatehouse's own module does not depend on testcontainers-go.
package containers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

func init() { redistest.Register("testcontainers", start) }

// start runs the local Redis image through testcontainers-go and returns the address of
// its mapped port and a function that removes the container.
func start() (addr string, stop func(), err error) {
	image := os.Getenv("GATEHOUSE_REDIS_IMAGE")
	if image == "" {
		image = "gatehouse-redis:local"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := tcredis.Run(ctx, image)
	if err != nil {
		if c != nil {
			_ = c.Terminate(context.Background())
		}
		return "", nil, fmt.Errorf("testcontainers: %w\n(needs a running Docker engine and the image %s: 'make redis-image' builds it; "+
			"set TESTCONTAINERS_RYUK_DISABLED=true and TESTCONTAINERS_HOST_OVERRIDE=localhost where no registry is reachable)", err, image)
	}
	uri, err := c.ConnectionString(ctx)
	if err != nil {
		_ = c.Terminate(context.Background())
		return "", nil, fmt.Errorf("testcontainers: %w", err)
	}
	return strings.TrimPrefix(uri, "redis://"), func() { _ = c.Terminate(context.Background()) }, nil
}
