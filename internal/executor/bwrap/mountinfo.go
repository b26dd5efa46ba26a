package bwrap

import (
	"fmt"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/<pid>/mountinfo.
type mountEntry struct {
	Root      string // path of the mount's root within its filesystem
	Point     string // mount point, in the reader's mount namespace
	FSType    string
	Source    string
	SuperOpts []string // per-superblock options (cgroup v1: its controllers)
	MountOpts []string // per-mount options
}

// parseMountinfo parses the text of a mountinfo file (proc(5)). Paths are
// unescaped (the kernel writes space, tab, newline and backslash as \ooo).
func parseMountinfo(text string) ([]mountEntry, error) {
	var out []mountEntry
	for n, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || len(f) < sep+4 {
			return nil, fmt.Errorf("mountinfo line %d: %q: too few fields", n+1, line)
		}
		out = append(out, mountEntry{
			Root:      unescapeMountPath(f[3]),
			Point:     unescapeMountPath(f[4]),
			MountOpts: strings.Split(f[5], ","),
			FSType:    f[sep+1],
			Source:    unescapeMountPath(f[sep+2]),
			SuperOpts: strings.Split(f[sep+3], ","),
		})
	}
	return out, nil
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
