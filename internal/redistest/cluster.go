package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of redis-server processes on loopback ports: three masters, each with
// one replica, created with redis-cli --cluster create. The node timeout is one second, so that a
// replica takes over a stopped master within a few seconds.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts six cluster-enabled servers, joins them into a cluster and waits until every
// node reports all 16384 slots served and every replica is linked to its master.
func StartCluster() (*Cluster, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, errNoRedis
	}
	c := &Cluster{}
	for range 6 {
		s, err := StartServer(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
		)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Addrs returns every node's address, masters and replicas.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a new cluster client for the cluster; the caller closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true})
}

// WaitHealthy waits until every running node reports cluster_state:ok with all slots served and each
// running replica's link to its master is up. After a node was stopped, this is the wait for the
// failover; after it was started again, the wait for it to rejoin.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if last = c.unhealthy(); last == "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redistest: cluster not healthy after %v: %s", timeout, last)
}

// unhealthy returns why the cluster is not healthy yet, or "".
func (c *Cluster) unhealthy() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DisableIdentity: true, MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		var repl string
		if err == nil {
			repl, err = cl.Info(ctx, "replication").Result()
		}
		cl.Close()
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v", n.Addr, err)
		case !strings.Contains(info, "cluster_state:ok"), !strings.Contains(info, "cluster_slots_ok:16384"):
			return fmt.Sprintf("%s: cluster state not ok yet", n.Addr)
		case strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up"):
			return fmt.Sprintf("%s: replica link not up yet", n.Addr)
		}
	}
	return ""
}

// MasterFor returns the running node that serves key's slot as a master.
func (c *Cluster) MasterFor(ctx context.Context, key string) (*Server, error) {
	cc := c.Client()
	defer cc.Close()
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if n.Addr == m.Options().Addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("redistest: master %s of key is not one of the cluster's nodes", m.Options().Addr)
}

// PrivateCluster starts a cluster of the test's own (StartCluster), for a test that changes it
// (fails a master over, migrates a slot), and a client of it; both are closed when the test ends.
// It skips the test unless the cluster backend is selected, as Get does.
func PrivateCluster(t testing.TB) (*Cluster, *redis.ClusterClient) {
	t.Helper()
	Get(t, "cluster")
	cl, err := StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	rdb := cl.Client()
	t.Cleanup(func() { rdb.Close() })
	return cl, rdb
}

// StartMigration marks key's slot as migrating from its master to another master of the
// cluster rdb talks to (CLUSTER SETSLOT IMPORTING on the new one, MIGRATING on the old), moving no
// key: a key the old master does not hold is then sent (ASK) to the new one. It returns both
// masters.
func StartMigration(ctx context.Context, rdb *redis.ClusterClient, key string) (from, to *redis.Client, err error) {
	if from, err = rdb.MasterForKey(ctx, key); err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		if n.Options().Addr != from.Options().Addr {
			to = n
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if to == nil {
		return nil, nil, errors.New("redistest: no other master to migrate to")
	}
	fromID, err1 := from.Do(ctx, "CLUSTER", "MYID").Text()
	toID, err2 := to.Do(ctx, "CLUSTER", "MYID").Text()
	if err := errors.Join(err1, err2); err != nil {
		return nil, nil, err
	}
	slot := rdb.ClusterKeySlot(ctx, key).Val()
	err3 := to.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID).Err()
	err4 := from.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID).Err()
	if err := errors.Join(err3, err4); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}

// Close stops every node and removes their data.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Close()
	}
}
