package redistest

import (
	"os/exec"
	"syscall"
)

// orphanProof makes the kernel kill the server when the test binary dies, so that a crashed or
// killed test run leaves no redis-server behind.
func orphanProof(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
