// Package script is the runtime of gatehouse's Lua scripts, on which the limiter and session
// packages are built: every decision and every session operation is one script call (a session's
// load: the read of a hash and one call that checks it, in one round trip).
//
// The files of this package follow its jobs:
//
//   - script.go: Script, a name, its source and the SHA1 of that source;
//   - embed.go: the scripts embedded from scripts/ (the scripts package), composed from their shared parts (scripts/lib) at
//     start-up (Lookup, Scripts);
//   - run.go: running one call with EVALSHA, recovering from NOSCRIPT by itself (Run; RunInts for
//     a script that replies an array of integers, decoded without boxing), and loading scripts
//     ahead of traffic (Load, Preload);
//   - batch.go: many calls in one pipeline, with the same recovery (RunBatch), and commands built
//     by a caller that groups calls itself (Cmd, IntsCmd, Exec: internal/coalesce);
//   - hgetall.go: a read of a hash and a call that checks it, in one pipeline (RunHGetAll: the
//     session store's load);
//   - cluster.go: cluster slots (Slot, ErrCrossSlot) and routes (the node a call goes to, the slot
//     map reloaded after a failure).
//
// All of this works with any redis.UniversalClient: a single server, a Sentinel failover client, a
// Cluster, or a Ring. docs/runtime.md describes the runtime; the package gatehouse exports Preload.
package script

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

// Script is one Lua script: a name, its source and the SHA1 of its source, computed once.
// A Script is immutable and safe for concurrent use.
type Script struct {
	name   string
	src    string
	sha    string
	shaArg any // sha, boxed once for Cmd
}

// New returns a Script with the given name and source. gatehouse's own scripts come from Lookup
// and Scripts; New serves tests that need scripts of their own.
func New(name, src string) *Script {
	sum := sha1.Sum([]byte(src))
	sha := hex.EncodeToString(sum[:])
	return &Script{name: name, src: src, sha: sha, shaArg: sha}
}

// Name returns the script's name; for an embedded script, its file name without ".lua".
func (s *Script) Name() string { return s.name }

// SHA1 returns the lower-case hex SHA1 of the source, the digest EVALSHA takes.
func (s *Script) SHA1() string { return s.sha }

// Source returns the Lua source; for an embedded script, as composed from its shared parts.
func (s *Script) Source() string { return s.src }

func (s *Script) wrap(err error) error {
	return fmt.Errorf("gatehouse: script %s: %w", s.name, err)
}
