//go:build !unix

package redistest

import (
	"errors"
	"fmt"
)

// Pause is not supported here: it needs SIGSTOP.
func (s *Server) Pause() error {
	return fmt.Errorf("redistest: pausing a server: %w", errors.ErrUnsupported)
}

// Resume is not supported here: it needs SIGCONT.
func (s *Server) Resume() error {
	return fmt.Errorf("redistest: resuming a server: %w", errors.ErrUnsupported)
}
