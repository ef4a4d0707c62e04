//go:build !linux

package harness

import "errors"

func startHogs(n int) (func(), error) {
	if n == 0 {
		return func() {}, nil
	}
	return nil, errors.New("harness: CPU hogs need Linux")
}
