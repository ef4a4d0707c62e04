// Package redisfail classifies the errors of calls to Redis, once for every package of gatehouse
// that talks to Redis, so that the limiter and the session store take the same failure for the
// same thing and name it by the same error.type in their spans and metrics.
//
// The one question that decides what a caller does is Failed: did Redis fail (it could not be
// reached, the connection broke, it did not answer in time, or it answered that it cannot serve
// now), as opposed to answering about the call (an error reply of the script, a key of another
// type, a refused command), the caller giving up, or the program having closed its client.
package redisfail

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Kind is what an error of a call to Redis is.
type Kind uint8

const (
	// None: no error.
	None Kind = iota
	// Other: an error this package does not know (not from Redis, or from the client in a way
	// it does not recognise). Not a failure of Redis.
	Other
	// Canceled: the caller's context was canceled: the caller gave up, whatever else went wrong.
	Canceled
	// Closed: the program closed its client (redis.ErrClosed). Not a failure of Redis.
	Closed
	// Timeout: no answer in time: a context deadline (the caller's, or a per-operation bound such
	// as WithTimeout's), the client's read or write timeout, or its pool timeout (every
	// connection busy for PoolTimeout).
	Timeout
	// Unreachable: no answer: the connection was refused, reset or closed by the server, the
	// server sent bytes that are not a reply, or no node, shard or Sentinel could be reached.
	Unreachable
	// Interrupted: a connection this process closed while the call waited for its reply
	// (net.ErrClosed: the program closing its client under the call). The call got no answer,
	// but that says nothing of the server.
	Interrupted
	// CannotServe: Redis answered that it cannot serve now (an error reply with one of the
	// prefixes in CannotServeReplies).
	CannotServe
	// SlotMoving: a Cluster node answered TRYAGAIN: the keys' slot is being migrated or
	// rehashed. The failure concerns one slot, not the server.
	SlotMoving
	// OutOfMemory: Redis refused a write for want of memory (OOM: used memory above maxmemory
	// under the noeviction policy). It refuses every write for every key until memory is freed.
	OutOfMemory
	// ErrorReply: Redis answered the call with an error reply about it: an error of the script
	// itself, a key of another type, a command the user may not run. Not a failure of Redis.
	ErrorReply
)

var kindNames = [...]string{
	None: "none", Other: "other", Canceled: "canceled", Closed: "closed", Timeout: "timeout",
	Unreachable: "unreachable", Interrupted: "interrupted", CannotServe: "cannot_serve",
	SlotMoving: "slot_moving", OutOfMemory: "oom", ErrorReply: "error_reply",
}

// String returns the kind's name in snake case: "none", "timeout", "cannot_serve", ...
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "other"
}

// Failed reports whether k is a failure of Redis: Timeout, Unreachable, Interrupted,
// CannotServe, SlotMoving or OutOfMemory. A failure policy stands in for exactly these.
func (k Kind) Failed() bool {
	switch k {
	case Timeout, Unreachable, Interrupted, CannotServe, SlotMoving, OutOfMemory:
		return true
	}
	return false
}

// ServerWide reports whether k is a failure of the server (or of the connection to it), which
// a cooldown spares: every failure but SlotMoving (one slot) and Interrupted (this process's
// doing).
func (k Kind) ServerWide() bool { return k.Failed() && k != SlotMoving && k != Interrupted }

// The error.type values of the errors Classify tells apart, as gatehouse's spans and metrics
// record them (docs/tracing.md). The packages add values of their own for their own verdicts
// (invalid_argument, corrupt_state, bad_reply, ...).
const (
	TypeCanceled    = "canceled"
	TypeClosed      = "closed"
	TypeTimeout     = "timeout"
	TypeUnavailable = "unavailable"
	TypeOOM         = "oom"
	TypeErrorReply  = "error_reply"
	TypeOther       = "_OTHER" // OpenTelemetry's value for an error of no known type
)

// ErrorType returns the error.type of an operation that failed with an error of kind k: ""
// for None, "canceled", "closed", "timeout", "unavailable" (Unreachable, Interrupted,
// CannotServe, SlotMoving), "oom", "error_reply", and "_OTHER" for Other.
func (k Kind) ErrorType() string {
	switch k {
	case None:
		return ""
	case Canceled:
		return TypeCanceled
	case Closed:
		return TypeClosed
	case Timeout:
		return TypeTimeout
	case Unreachable, Interrupted, CannotServe, SlotMoving:
		return TypeUnavailable
	case OutOfMemory:
		return TypeOOM
	case ErrorReply:
		return TypeErrorReply
	}
	return TypeOther
}

// CannotServeReplies are the prefixes of the error replies by which Redis says it cannot serve
// now, whatever the command: loading its data set, blocked by a long script or function,
// a replica whose master is down (replica-serve-stale-data no), a cluster that is down, a write
// sent to a replica (a master demoted by a failover), too few replicas for min-replicas-to-write,
// writes stopped after a failed snapshot (stop-writes-on-bgsave-error), and maxclients reached
// ("ERR max number of clients reached"; redis.HasErrorPrefix strips "ERR "). "BUSY " has its
// space so that BUSYKEY and BUSYGROUP, which concern one key, are not taken. OOM and TRYAGAIN
// have kinds of their own.
var CannotServeReplies = []string{
	"LOADING", "BUSY ", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "NOREPLICAS", "MISCONF",
	"max number of clients",
}

// noAnswer are the texts of go-redis errors, not exported, by which a client says that no
// server could be reached or that what it read is not a reply (the connection is then dropped).
var noAnswer = []string{
	"redis: all ring shards are down",
	"redis: cluster has no nodes",
	"redis: all sentinels specified in configuration are unreachable",
	"redis: connection not available",
	"redis: connection pool has no free turn",
	"redis: timed out trying to mark connection as unusable",
	"redis: can't parse",
	"redis: invalid reply",
	"redis: invalid line",
	"redis: can't read raw reply",
}

// Classify returns what kind of error err is: None for nil. Errors of the caller's own
// (invalid arguments, corrupt data it decoded) should be told apart before: a wrapped
// io.ErrUnexpectedEOF, for one, is taken as a broken connection.
func Classify(err error) Kind {
	switch {
	case err == nil:
		return None
	case errors.Is(err, context.Canceled):
		return Canceled // the caller gave up, whatever else went wrong
	case errors.Is(err, redis.ErrClosed):
		return Closed
	case errors.Is(err, redis.Nil):
		return Other // not an error reply: no value
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		switch {
		case redis.HasErrorPrefix(reply, "TRYAGAIN"):
			return SlotMoving
		case redis.HasErrorPrefix(reply, "OOM"):
			return OutOfMemory
		}
		for _, prefix := range CannotServeReplies {
			if redis.HasErrorPrefix(reply, prefix) {
				return CannotServe
			}
		}
		return ErrorReply
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, redis.ErrPoolTimeout):
		return Timeout
	case errors.Is(err, net.ErrClosed):
		return Interrupted
	case errors.As(err, &ne):
		if ne.Timeout() {
			return Timeout
		}
		return Unreachable // a dial, read or write that failed
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, redis.ErrPoolExhausted):
		return Unreachable // the connection failed, or the server closed it
	}
	msg := err.Error()
	for _, s := range noAnswer {
		if strings.Contains(msg, s) {
			return Unreachable
		}
	}
	return Other
}
