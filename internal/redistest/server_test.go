package redistest

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// A cluster node whose bus port another process holds exits at once; Start reports errPortTaken
// then, not after its 10 s PING deadline, so that StartServer can try new ports.
func TestStartReportsATakenBusPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal(errNoRedis)
	}
	port, err := freePort(clusterBusOffset)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: t.TempDir(),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir(),
			"--save", "", "--appendonly", "no", "--cluster-enabled", "yes"},
	}
	start := time.Now()
	err = s.Start()
	if err == nil {
		s.Stop()
		t.Fatal("Start succeeded with the bus port taken")
	}
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("Start = %v, want errPortTaken", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %v to see the exit", d)
	}
}
