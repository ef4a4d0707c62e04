// Package integration holds gatehouse's tests that need more than Redis and gatehouse's own
// dependencies: the OpenTelemetry SDK, toxiproxy, a browser, other HTTP libraries. They run against
// a standalone server, a cluster of three masters with replicas, and (in CI's second pass) a server
// run through testcontainers-go. See internal/redistest for how the servers are found or started.
package integration

import (
	"os"
	"testing"

	_ "github.com/gatehouse/gatehouse/integration/internal/containers" // GATEHOUSE_TEST_BACKENDS=testcontainers
	"github.com/gatehouse/gatehouse/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
