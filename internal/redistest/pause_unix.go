//go:build unix

package redistest

import (
	"fmt"
	"os"
	"syscall"
)

// Pause stops the process with SIGSTOP, as a host that stalls would: it keeps its data and its
// connections, and the kernel still accepts new ones into its backlog, but nothing is read or
// answered until Resume. Stop and Close kill a paused process all the same.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a process stopped by Pause (SIGCONT): it then reads, and runs, every command
// sent meanwhile, including those whose callers have given up.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redistest: server %s is not running", s.Addr)
	}
	return s.cmd.Process.Signal(sig)
}
