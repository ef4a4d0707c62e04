// Package gatehouse runs the Lua scripts that gatehouse's rate limiter (package limiter) and session
// store (package session) are built on. Every decision and every session operation is one script call.
//
// A script is sent by its SHA1 with EVALSHA. When a server answers NOSCRIPT (a fresh server, a
// restart, SCRIPT FLUSH, a failover to a replica), the script is loaded on the node that answered and
// the call is sent once more; the caller sees no error. RunBatch does the same inside a pipeline,
// where go-redis' own Script.Run cannot: only the calls that came back NOSCRIPT are run again.
// Preload loads every script ahead of traffic, so that a warm server sees one EVALSHA per call.
//
// All of this works with any redis.UniversalClient: a single server, a Sentinel failover client, a
// Cluster, or a Ring. The keys of one call must share a cluster slot; a call whose keys do not is
// refused with ErrCrossSlot before anything is sent, whatever the client.
//
// Most programs only call Preload at start-up; the limiter and session packages do the rest.
package gatehouse

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua
var scriptFiles embed.FS

// Script is one Lua script: a name, its source and the SHA1 of its source, computed once.
// A Script is immutable and safe for concurrent use.
type Script struct {
	name string
	src  string
	sha  string
}

// NewScript returns a Script with the given name and source. gatehouse's own scripts come from
// Lookup and Scripts; NewScript is for running scripts of one's own through the same runtime.
func NewScript(name, src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{name: name, src: src, sha: hex.EncodeToString(sum[:])}
}

// Name returns the script's name; for an embedded script, its file name without ".lua".
func (s *Script) Name() string { return s.name }

// SHA1 returns the lower-case hex SHA1 of the source, the digest EVALSHA takes.
func (s *Script) SHA1() string { return s.sha }

// Source returns the Lua source.
func (s *Script) Source() string { return s.src }

var embedded = loadEmbedded()

func loadEmbedded() map[string]*Script {
	m := make(map[string]*Script)
	err := fs.WalkDir(scriptFiles, "scripts", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := scriptFiles.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(path.Base(p), ".lua")
		m[name] = NewScript(name, string(src))
		return nil
	})
	if err != nil {
		// The files are compiled into the binary; failing to read them is a broken build.
		panic("gatehouse: reading embedded scripts: " + err.Error())
	}
	return m
}

// Lookup returns the embedded script with the given name (its file name in scripts/ without ".lua").
func Lookup(name string) (*Script, bool) {
	s, ok := embedded[name]
	return s, ok
}

// Scripts returns every embedded script, sorted by name.
func Scripts() []*Script {
	out := make([]*Script, 0, len(embedded))
	for _, s := range embedded {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Script) int { return strings.Compare(a.name, b.name) })
	return out
}

// Run runs the script with EVALSHA. On NOSCRIPT it loads the script on the node that owns keys[0]
// (or, without keys, wherever the client sends keyless commands) and runs it once more.
//
// The reply is returned as go-redis decodes it: int64, string, []any, or a redis.Error for an error
// reply. Errors are wrapped with the script's name; a nil reply is redis.Nil, wrapped.
func (s *Script) Run(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	return s.RunVia(ctx, c, c, keys, args...)
}

// RunVia is Run with the EVALSHA sent through via, such as the *redis.AutoPipeliner of c, which
// gathers concurrent calls into pipelines. NOSCRIPT recovery and a Cluster's route refresh go
// through c, the client via sends on.
func (s *Script) RunVia(ctx context.Context, via redis.Scripter, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	if err := checkSlots(keys); err != nil {
		return nil, s.wrap(err)
	}
	v, err := via.EvalSha(ctx, s.sha, keys, args...).Result()
	if isNoScript(err) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		v, err = via.EvalSha(ctx, s.sha, keys, args...).Result()
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, s.wrap(err)
	}
	return v, nil
}

// refreshRoutes asks a ClusterClient to reload its slot map after a call failed with no reply from
// Redis (a refused dial, a broken connection, a timeout). go-redis reloads it on MOVED, or every
// ClusterStateReloadInterval (60 s by default); a master that died never answers MOVED, so without
// this every call for its slots would fail until the next periodic reload, long after a replica
// took over. go-redis coalesces reloads, so a burst of failures costs one reload per 200 ms. It
// reports whether it asked for a reload.
func refreshRoutes(c redis.UniversalClient, err error) bool {
	cc, ok := c.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return false // Redis answered: the route works
	}
	cc.ReloadState(context.Background())
	return true
}

// Load loads the script on every node the client knows: each master and replica of a Cluster, each
// shard of a Ring, otherwise the one server the client talks to.
func (s *Script) Load(ctx context.Context, c redis.UniversalClient) error {
	return loadAll(ctx, c, []*Script{s})
}

// Preload loads every embedded script on every node the client knows: each master and replica of a
// Cluster (so that a replica promoted by a failover has them too), each shard of a Ring, otherwise
// the one server. After it, a call costs exactly one EVALSHA on the server. Calling it is optional:
// without it, the first call of each script on each node costs one extra SCRIPT LOAD.
func Preload(ctx context.Context, c redis.UniversalClient) error {
	return loadAll(ctx, c, Scripts())
}

func loadAll(ctx context.Context, c redis.UniversalClient, scripts []*Script) error {
	load := func(ctx context.Context, node *redis.Client) error { return loadOn(ctx, node, scripts) }
	switch cc := c.(type) {
	case *redis.ClusterClient:
		return cc.ForEachShard(ctx, load)
	case *redis.Ring:
		return cc.ForEachShard(ctx, load)
	default:
		return loadOn(ctx, c, scripts)
	}
}

// loadOn loads scripts on one node in one round trip and checks that the node agrees on each digest.
func loadOn(ctx context.Context, node redis.Cmdable, scripts []*Script) error {
	cmds := make([]*redis.StringCmd, len(scripts))
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range scripts {
			cmds[i] = p.ScriptLoad(ctx, s.src)
		}
		return nil
	})
	for i, cmd := range cmds {
		sha, err := cmd.Result()
		if err != nil {
			return scripts[i].wrap(fmt.Errorf("SCRIPT LOAD: %w", err))
		}
		if sha != scripts[i].sha {
			return scripts[i].wrap(fmt.Errorf("SCRIPT LOAD returned digest %s, want %s", sha, scripts[i].sha))
		}
	}
	return nil
}

// loadFor loads the script on the node that a call with these keys is sent to.
func (s *Script) loadFor(ctx context.Context, c redis.UniversalClient, keys []string) error {
	node, err := nodeFor(ctx, c, keys)
	if err != nil {
		return err
	}
	return loadOn(ctx, node, []*Script{s})
}

// nodeFor returns the client of the node that serves keys[0]. For a single server or a failover
// client, and for a keyless call, that is the client itself (a ClusterClient loads keyless
// SCRIPT LOAD on every shard).
func nodeFor(ctx context.Context, c redis.UniversalClient, keys []string) (redis.Cmdable, error) {
	if len(keys) == 0 {
		return c, nil
	}
	switch cc := c.(type) {
	case *redis.ClusterClient:
		return cc.MasterForKey(ctx, keys[0])
	case *redis.Ring:
		return cc.GetShardClientForKey(keys[0])
	default:
		return c, nil
	}
}

func (s *Script) wrap(err error) error {
	return fmt.Errorf("gatehouse: script %s: %w", s.name, err)
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// Call is one script call of a batch.
type Call struct {
	Script *Script
	Keys   []string
	Args   []any
}

// Result is the outcome of one Call of a batch: the reply, or an error.
type Result struct {
	Val any
	Err error
}

// RunBatch runs calls in one pipeline and returns one Result per call, in order. The calls are
// independent: one call's error, wrapped with its script's name, does not fail the others.
//
// Calls answered NOSCRIPT are recovered together: each missing script is loaded once on each node
// that needs it, and just those calls are sent again in a second pipeline. A call with keys in
// different slots gets ErrCrossSlot and is not sent. On a Cluster the pipeline is split by node.
func RunBatch(ctx context.Context, c redis.UniversalClient, calls []Call) []Result {
	results := make([]Result, len(calls))
	todo := make([]int, 0, len(calls))
	for i, call := range calls {
		switch {
		case call.Script == nil:
			results[i].Err = errors.New("gatehouse: batch call without a script")
		default:
			if err := checkSlots(call.Keys); err != nil {
				results[i].Err = call.Script.wrap(err)
				continue
			}
			todo = append(todo, i)
		}
	}
	retry := runPipeline(ctx, c, calls, todo, results)
	if len(retry) == 0 {
		return results
	}
	retry = loadMissing(ctx, c, calls, retry, results)
	if len(retry) > 0 {
		runPipeline(ctx, c, calls, retry, results)
	}
	return results
}

// runPipeline sends calls[idx] as one pipeline of EVALSHA, fills their results, and returns the
// indexes that came back NOSCRIPT (their results are filled too, in case they are not retried).
func runPipeline(ctx context.Context, c redis.UniversalClient, calls []Call, idx []int, results []Result) (noscript []int) {
	if len(idx) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(idx))
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range idx {
			cmds[j] = p.EvalSha(ctx, calls[i].Script.sha, calls[i].Keys, calls[i].Args...)
		}
		return nil
	})
	refreshed := false
	for j, i := range idx {
		v, err := cmds[j].Result()
		if err != nil {
			if isNoScript(err) {
				noscript = append(noscript, i)
			} else if !refreshed {
				refreshed = refreshRoutes(c, err)
			}
			results[i] = Result{Err: calls[i].Script.wrap(err)}
			continue
		}
		results[i] = Result{Val: v}
	}
	return noscript
}

// loadMissing loads each script of calls[idx] once on each node those calls are sent to, and returns
// the indexes whose script is now loaded. A call whose load failed gets that error as its result.
func loadMissing(ctx context.Context, c redis.UniversalClient, calls []Call, idx []int, results []Result) []int {
	type target struct {
		node   string
		script *Script
	}
	loaded := make(map[target]error)
	ready := idx[:0:0]
	for _, i := range idx {
		s := calls[i].Script
		node, err := nodeFor(ctx, c, calls[i].Keys)
		if err != nil {
			results[i].Err = s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
			continue
		}
		t := target{node: nodeName(node), script: s}
		lerr, done := loaded[t]
		if !done {
			lerr = loadOn(ctx, node, []*Script{s})
			loaded[t] = lerr
		}
		if lerr != nil {
			results[i].Err = s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", lerr))
			continue
		}
		ready = append(ready, i)
	}
	return ready
}

// nodeName identifies a node client for deduplicating loads within one batch.
func nodeName(node redis.Cmdable) string {
	if n, ok := node.(*redis.Client); ok {
		return n.Options().Addr
	}
	return ""
}
