package harness

import (
	"fmt"
	"os/exec"
	"syscall"
)

// startHogs starts n processes that each keep one core busy, standing in for the other work a
// shared machine does; the returned function kills them. They die with the harness if it dies.
func startHogs(n int) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("harness: starting a CPU hog: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}
