// Package redisfail tells a failure of Redis itself from an error about one call, so that every
// package of gatehouse that talks to Redis classifies errors the same way: Redis could not answer
// (unreachable, the connection broke, no answer in time), or it answered that it cannot serve now
// (loading its data, busy with a script, failing over, read-only, out of memory, out of client
// slots). Anything else (an error reply about a key or a script, a bad reply, the caller giving
// up) is not a failure of Redis.
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

// Kind is what kind of failure of Redis an error is.
type Kind uint8

const (
	// None: not a failure of Redis. Redis answered (an error about the call, its keys or its
	// script), or the caller gave up (context.Canceled), or the error did not come from Redis.
	None Kind = iota
	// Timeout: no answer in time: a context deadline (the caller's, or a per-operation bound such
	// as WithTimeout's), the client's read or write timeout, or its pool timeout.
	Timeout
	// Unreachable: no answer: the connection was refused, reset or closed, or no node, shard or
	// Sentinel could be reached. (A client the program closed, redis.ErrClosed, is not a failure
	// of Redis.)
	Unreachable
	// CannotServe: Redis answered that it cannot serve now (an error reply with one of the
	// prefixes in CannotServeReplies).
	CannotServe
	// SlotMoving: a Cluster node answered TRYAGAIN: the keys' slot is being migrated or
	// rehashed. The failure concerns one slot, not the server.
	SlotMoving
)

// String returns "none", "timeout", "unreachable", "cannot_serve" or "slot_moving".
func (k Kind) String() string {
	switch k {
	case Timeout:
		return "timeout"
	case Unreachable:
		return "unreachable"
	case CannotServe:
		return "cannot_serve"
	case SlotMoving:
		return "slot_moving"
	}
	return "none"
}

// Failed reports whether k is a failure of Redis: any Kind but None.
func (k Kind) Failed() bool { return k != None }

// Answered reports whether Redis answered, with a reply saying it cannot serve now (CannotServe,
// SlotMoving): the connection works.
func (k Kind) Answered() bool { return k == CannotServe || k == SlotMoving }

// ServerWide reports whether the failure concerns the server (or the connection to it) rather
// than the keys' slot: every failure but SlotMoving.
func (k Kind) ServerWide() bool { return k.Failed() && k != SlotMoving }

// ErrorType returns the error.type of a span that failed with k: "timeout" for Timeout,
// "unavailable" for the other failures, "" for None.
func (k Kind) ErrorType() string {
	switch k {
	case None:
		return ""
	case Timeout:
		return "timeout"
	}
	return "unavailable"
}

// CannotServeReplies are the prefixes of the error replies by which Redis says it cannot serve
// now, whatever the command: loading its data set, blocked by a long script or function,
// a replica whose master is down (replica-serve-stale-data no), a cluster that is down, a write
// sent to a replica, too few replicas for min-replicas-to-write,
// writes stopped after a failed snapshot (stop-writes-on-bgsave-error), out of memory under
// noeviction, and maxclients reached ("ERR max number of clients reached"; go-redis strips "ERR ").
// "BUSY " has its space so that BUSYKEY and BUSYGROUP, which concern one key, are not taken.
var CannotServeReplies = []string{
	"LOADING", "BUSY ", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "NOREPLICAS", "MISCONF",
	"OOM", "max number of clients",
}

// noAnswer are go-redis errors, not exported, by which a client says no server could be reached.
var noAnswer = []string{
	"redis: all ring shards are down",
	"redis: cluster has no nodes",
	"redis: all sentinels specified in configuration are unreachable",
	"redis: connection not available",
}

// Classify returns what kind of failure of Redis err is, None for nil or for anything else.
// Errors of the caller's own (invalid arguments, corrupt data it decoded) should be told apart
// before: a wrapped io.ErrUnexpectedEOF, for one, is taken as a broken connection.
func Classify(err error) Kind {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return None // the caller gave up, or the program closed the client
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		if redis.HasErrorPrefix(reply, "TRYAGAIN") {
			return SlotMoving
		}
		for _, prefix := range CannotServeReplies {
			if redis.HasErrorPrefix(reply, prefix) {
				return CannotServe
			}
		}
		return None // an answer about the call
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, redis.ErrPoolTimeout):
		return Timeout
	case errors.As(err, &ne):
		if ne.Timeout() {
			return Timeout
		}
		return Unreachable // a dial, read or write that failed
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return Unreachable // the connection failed, or the server closed it
	case errors.Is(err, redis.ErrPoolExhausted):
		return Unreachable
	}
	msg := err.Error()
	for _, s := range noAnswer {
		if strings.Contains(msg, s) {
			return Unreachable
		}
	}
	return None
}
