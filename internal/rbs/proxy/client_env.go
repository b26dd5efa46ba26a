package proxy

import (
	"bytes"
	"slices"
	"strings"
)

// DefaultClientEnv are the environment variables (NAME, or NAME* for a
// prefix) whose --client_env values cross to the remote server. The client
// sends its whole environment; everything else (tokens, keys, local
// paths) stays on the developer's machine. ProxyConfig.ClientEnv adds
// names.
var DefaultClientEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ",
	"TERM", "COLORTERM", "NO_COLOR", "CC", "CXX", "BAZEL_*",
}

// envFilter decides which --client_env values cross.
type envFilter struct {
	exact    map[string]bool
	prefixes []string
}

func newEnvFilter(extra []string) envFilter {
	f := envFilter{exact: map[string]bool{}}
	for _, n := range slices.Concat(DefaultClientEnv, extra) {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			f.prefixes = append(f.prefixes, p)
		} else {
			f.exact[n] = true
		}
	}
	return f
}

func (f envFilter) allows(name string) bool {
	if f.exact[name] {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var clientEnvFlag = []byte("--client_env=")

// filterArgs drops the --client_env=NAME=VALUE arguments (before a "--")
// whose NAME is not allowed, and returns how many were dropped.
func (f envFilter) filterArgs(args [][]byte) ([][]byte, int) {
	out := make([][]byte, 0, len(args))
	dropped := 0
	residue := false
	for i, a := range args {
		if i > 0 && string(a) == "--" {
			residue = true
		}
		if !residue && bytes.HasPrefix(a, clientEnvFlag) {
			name, _, _ := bytes.Cut(a[len(clientEnvFlag):], []byte("="))
			if !f.allows(string(name)) {
				dropped++
				continue
			}
		}
		out = append(out, a)
	}
	return out, dropped
}
