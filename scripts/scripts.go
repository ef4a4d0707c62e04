// Package scripts holds gatehouse's Lua scripts: every rate-limit decision and every session
// operation is one call of one of them. Each file's header is its contract (KEYS, ARGV, reply);
// lib/ holds the parts several scripts share, which gatehouse composes into each script where a
// line "--#include lib/<part>" names them, and docs/runtime.md describes how they are run.
//
// Applications do not need this package: the limiter and session packages load and run the
// scripts themselves. It is exported so that tools can read exactly the text gatehouse runs.
package scripts

import (
	"embed"
	"io/fs"
)

//go:embed *.lua lib/*.lua
var files embed.FS

// FS returns the scripts (*.lua) and their shared parts (lib/*.lua), as they are in this
// directory, before composition.
func FS() fs.FS { return files }
