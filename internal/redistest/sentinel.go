package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a master, its replicas and three Sentinels that watch them (quorum 2), each a process
// this package started on a loopback port. The Sentinels call the master down after one second
// without a reply, so a failover takes a few seconds.
type Sentinel struct {
	// MasterName is the name the Sentinels know the master by, as FailoverOptions.MasterName.
	MasterName string
	// Program is how the Sentinels run: "redis-sentinel" (Debian's redis-sentinel package), or,
	// without it, "redis-server --sentinel", the same binary in Sentinel mode.
	Program string
	// Data holds the servers: the master as started, then the replicas. After a failover the
	// master is whichever the Sentinels say (MasterAddr, Node).
	Data []*Server
	// Sentinels are the Sentinel processes.
	Sentinels []*Server
}

// Sentinel timings: short, so that a test's failover takes seconds.
const (
	sentinelDownAfter       = 1000 // ms without a valid reply before a Sentinel calls a node down
	sentinelFailoverTimeout = 5000 // ms, the bound on one failover attempt
	sentinelQuorum          = 2
	sentinelCount           = 3
)

// dataArgs are the options of the master and replicas: a full resynchronisation starts at once
// (Redis 7 waits 5 seconds by default, for more replicas to join the transfer).
var dataArgs = []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}

// StartSentinel starts a master, replicas replicas of it and three Sentinels monitoring it, and
// waits (at most 30 seconds) until every replica is in sync and every Sentinel knows the master,
// the replicas and the other Sentinels, so that a failover can happen. Close stops them all.
func StartSentinel(replicas int) (*Sentinel, error) {
	s := &Sentinel{MasterName: "gatehouse"}
	if err := s.start(replicas); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sentinel) start(replicas int) error {
	master, err := StartServer(dataArgs...)
	if err != nil {
		return err
	}
	s.Data = append(s.Data, master)
	for range replicas {
		r, err := StartServer(append(dataArgs, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))...)
		if err != nil {
			return err
		}
		s.Data = append(s.Data, r)
	}
	// Replicas linked first: a Sentinel learns of them from the master's INFO, which it reads on
	// connecting and then only every 10 seconds.
	if err := waitFor(30*time.Second, func() string { return s.unsynced(replicas) }); err != nil {
		return err
	}
	bin, mode := "redis-sentinel", []string(nil)
	if _, err := exec.LookPath(bin); err != nil {
		bin, mode = "redis-server", []string{"--sentinel"}
	}
	s.Program = strings.Join(append([]string{bin}, mode...), " ")
	for range sentinelCount {
		sn, err := startSentinelProcess(bin, mode, s.MasterName, master.Port)
		if err != nil {
			return err
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	return waitFor(30*time.Second, func() string { return s.unready(replicas) })
}

// startSentinelProcess starts one Sentinel with a configuration file of its own, which Sentinel
// rewrites as it learns the topology.
func startSentinelProcess(bin string, mode []string, name string, masterPort int) (*Server, error) {
	var err error
	for range 5 {
		var sn *Server
		if sn, err = startSentinelOnce(bin, mode, name, masterPort); !errors.Is(err, errPortTaken) {
			return sn, err
		}
	}
	return nil, err
}

func startSentinelOnce(bin string, mode []string, name string, masterPort int) (*Server, error) {
	port, err := freePort(0)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gatehouse-sentinel-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf(`port %[1]d
bind 127.0.0.1
dir %[2]s
daemonize no
logfile %[2]s/sentinel.log
sentinel monitor %[3]s 127.0.0.1 %[4]d %[5]d
sentinel down-after-milliseconds %[3]s %[6]d
sentinel failover-timeout %[3]s %[7]d
sentinel parallel-syncs %[3]s 1
`, port, dir, name, masterPort, sentinelQuorum, sentinelDownAfter, sentinelFailoverTimeout)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sn := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: dir,
		bin: bin, args: append([]string{conf}, mode...),
	}
	if err := sn.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return sn, nil
}

// unsynced returns why the replicas are not in sync with the master yet, or "".
func (s *Sentinel) unsynced(replicas int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for i, n := range s.Data {
		info, err := nodeInfo(ctx, n.Addr, "replication")
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v", n.Addr, err)
		case i == 0 && !strings.Contains(info, "connected_slaves:"+strconv.Itoa(replicas)+"\r\n"):
			return fmt.Sprintf("master %s: not %d replicas connected yet", n.Addr, replicas)
		case i > 0 && !strings.Contains(info, "master_link_status:up"):
			return fmt.Sprintf("replica %s: link to the master not up yet", n.Addr)
		}
	}
	return ""
}

// unready returns why the Sentinels could not fail over yet, or "": each must see the master up,
// every replica linked and every other Sentinel.
func (s *Sentinel) unready(replicas int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, sn := range s.Sentinels {
		c := s.sentinelClient(sn.Addr)
		m, err := c.Master(ctx, s.MasterName).Result()
		var reps []map[string]string
		if err == nil {
			reps, err = c.Replicas(ctx, s.MasterName).Result()
		}
		c.Close()
		switch {
		case err != nil:
			return fmt.Sprintf("sentinel %s: %v", sn.Addr, err)
		case m["flags"] != "master":
			return fmt.Sprintf("sentinel %s: master flags %q", sn.Addr, m["flags"])
		case m["num-other-sentinels"] != strconv.Itoa(len(s.Sentinels)-1):
			return fmt.Sprintf("sentinel %s: knows %s other sentinels", sn.Addr, m["num-other-sentinels"])
		case len(reps) != replicas:
			return fmt.Sprintf("sentinel %s: knows %d replicas", sn.Addr, len(reps))
		}
		for _, r := range reps {
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Sprintf("sentinel %s: replica %s:%s flags %q, link %q", sn.Addr, r["ip"], r["port"], r["flags"], r["master-link-status"])
			}
		}
	}
	return ""
}

// SentinelAddrs returns the Sentinels' addresses, as FailoverOptions.SentinelAddrs.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// Addrs returns the address of every process: the data servers, then the Sentinels.
func (s *Sentinel) Addrs() []string {
	var addrs []string
	for _, n := range s.Data {
		addrs = append(addrs, n.Addr)
	}
	return append(addrs, s.SentinelAddrs()...)
}

// Client returns a failover client (redis.NewFailoverClient) with opt's settings, its master name
// and Sentinel addresses set to this deployment's; the caller closes it.
func (s *Sentinel) Client(opt redis.FailoverOptions) *redis.Client {
	opt.MasterName = s.MasterName
	opt.SentinelAddrs = s.SentinelAddrs()
	return redis.NewFailoverClient(&opt)
}

func (s *Sentinel) sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
}

// MasterAddr returns the master's address as every running Sentinel reports it, or an error when
// they disagree (during a failover) or one does not answer.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var agreed string
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		c := s.sentinelClient(sn.Addr)
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err != nil {
			return "", fmt.Errorf("redistest: sentinel %s: %w", sn.Addr, err)
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if agreed != "" && addr != agreed {
			return "", fmt.Errorf("redistest: sentinels disagree on the master: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	if agreed == "" {
		return "", errors.New("redistest: no sentinel running")
	}
	return agreed, nil
}

// Node returns the data server listening on addr, or nil.
func (s *Sentinel) Node(addr string) *Server {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// WaitFailover waits, at most timeout, until every Sentinel names a master other than old and that
// server says it is a master; it returns the new master's address.
func (s *Sentinel) WaitFailover(old string, timeout time.Duration) (string, error) {
	var addr string
	err := waitFor(timeout, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		a, err := s.MasterAddr(ctx)
		switch {
		case err != nil:
			return err.Error()
		case a == old:
			return "the sentinels still name " + old
		}
		info, err := nodeInfo(ctx, a, "replication")
		if err != nil {
			return fmt.Sprintf("new master %s: %v", a, err)
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Sprintf("new master %s does not say role:master yet", a)
		}
		addr = a
		return ""
	})
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, s.logs())
	}
	return addr, nil
}

// logs returns the last lines of each Sentinel's log, for a failure message.
func (s *Sentinel) logs() string {
	var b strings.Builder
	for _, sn := range s.Sentinels {
		data, err := os.ReadFile(sn.Path("sentinel.log"))
		if err != nil {
			fmt.Fprintf(&b, "sentinel %s: no log: %v\n", sn.Addr, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "sentinel %s, last lines of its log:\n%s\n", sn.Addr, strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
	return b.String()
}

// Close stops every process (SIGKILL, the Sentinels first, so that they start no failover) and
// removes their data; each Stop returns once its port refuses connections.
func (s *Sentinel) Close() {
	for _, sn := range s.Sentinels {
		sn.Close()
	}
	for _, n := range s.Data {
		n.Close()
	}
}

// nodeInfo returns one section of a server's INFO, through a connection of its own.
func nodeInfo(ctx context.Context, addr, section string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	return c.Info(ctx, section).Result()
}

// waitFor calls unmet every 100ms until it returns "", or fails after timeout with its last answer.
func waitFor(timeout time.Duration, unmet func() string) error {
	deadline := time.Now().Add(timeout)
	for {
		why := unmet()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: not ready after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
