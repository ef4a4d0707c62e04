package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process this package started on a loopback port.
type Server struct {
	Addr string
	Port int
	dir  string
	bin  string // the program to run; "redis-server" when empty
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartServer starts a private redis-server on a free loopback port, with persistence off, and
// waits until it answers PING. extra are further command-line options, such as "--cluster-enabled yes".
// The caller stops it with Stop.
func StartServer(extra ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errNoRedis
	}
	// A cluster node also listens on its bus port, port+10000, which freePort checks too. Another
	// process may still take either port between the check and the bind (the Linux ephemeral range
	// covers most bus ports), so a start that loses a port tries again on new ones.
	busOffset := 0
	for i := 0; i+1 < len(extra); i++ {
		if extra[i] == "--cluster-enabled" && extra[i+1] == "yes" {
			busOffset = clusterBusOffset
		}
	}
	var err error
	for range 5 {
		var s *Server
		if s, err = startServerOnce(busOffset, extra); !errors.Is(err, errPortTaken) {
			return s, err
		}
	}
	return nil, err
}

func startServerOnce(busOffset int, extra []string) (*Server, error) {
	port, err := freePort(busOffset)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gatehouse-redis-")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: dir}
	s.args = append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}, extra...)
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Start starts the process again after Stop, on the same port and with the same data directory.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redistest: server %s already running", s.Addr)
	}
	bin := s.bin
	if bin == "" {
		bin = "redis-server"
	}
	cmd := exec.Command(bin, s.args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	orphanProof(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting %s: %w", bin, err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			if bytes.Contains(out.Bytes(), []byte("Address already in use")) {
				return fmt.Errorf("%w: %s on %s exited:\n%s", errPortTaken, bin, s.Addr, out.String())
			}
			return fmt.Errorf("redistest: %s on %s exited before answering PING:\n%s", bin, s.Addr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited // out is written by exec's copying goroutine until Wait returns
			s.cmd = nil
			return fmt.Errorf("redistest: %s on %s did not answer PING within 10s: %v\n%s", bin, s.Addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the process (SIGKILL: a crash, not a clean shutdown). The data directory stays, so
// that a cluster node keeps its nodes.conf across Stop and Start.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	// Wait until the port is free, so that Start can bind it again.
	for i := 0; i < 200; i++ {
		conn, err := net.DialTimeout("tcp", s.Addr, 50*time.Millisecond)
		if err != nil {
			break
		}
		conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd = nil
}

// Close stops the process and removes its data directory.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// Path returns a path inside the server's data directory.
func (s *Server) Path(name string) string { return filepath.Join(s.dir, name) }

// clusterBusOffset is how far above its port a cluster node listens for the cluster bus.
const clusterBusOffset = 10000

// errPortTaken says a server could not bind its port: another process took it after freePort.
var errPortTaken = errors.New("redistest: port taken")

// freePort returns a loopback port nothing listens on; with offset > 0, port+offset is free too.
func freePort(offset int) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redistest: finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if offset == 0 {
			l.Close()
			return port, nil
		}
		if port+offset <= 65535 {
			if l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+offset))); err == nil {
				l2.Close()
				l.Close()
				return port, nil
			}
		}
		l.Close()
	}
	return 0, fmt.Errorf("redistest: no free loopback port with port+%d free too", offset)
}

var errNoRedis = errors.New(`redistest: no Redis server for the integration tests; get one of:
  - redis-server on PATH (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis);
    the tests start and stop private servers on loopback ports themselves;
  - REDIS_URL=redis://127.0.0.1:6379/0 for an existing server (tests use random key prefixes and
    never flush it), plus REDIS_CLUSTER_ADDRS=host:port,... for an existing cluster;
  - GATEHOUSE_TEST_BACKENDS=testcontainers with a Docker engine and a local Redis image
    (make redis-image builds one from the installed redis-server).
  - or run 'go test -short ./...' to skip the integration tests`)

// Running reports whether the process is running (started and not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// ServerGoroutines name the creators of the goroutines that watch a server's process (its Wait,
// its output): they live as long as the process does, for leaktest to leave aside.
var ServerGoroutines = []string{"github.com/gatehouse/gatehouse/internal/redistest.", "os/exec."}
