//go:build !amd64 && !arm64

package bwrap

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// seccompFilter: the filter is written for amd64 and arm64 only, and New
// refuses to run sandboxes elsewhere rather than run them unfiltered.
func seccompFilter(nested bool) ([]unix.SockFilter, error) {
	return nil, fmt.Errorf("seccomp filter: architecture %s is not supported (only amd64 and arm64)", runtime.GOARCH)
}
