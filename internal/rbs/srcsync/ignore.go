package srcsync

import (
	"bufio"
	"bytes"
	"path"
	"strings"
)

// Ignore says which workspace paths are not synced: the directories listed
// in .bazelignore (Bazel does not see them either) and extra exclusions.
type Ignore struct {
	dirs map[string]bool
}

// ParseIgnore reads .bazelignore content: one workspace-relative path per
// line; blank lines and lines starting with # are skipped, as are lines
// that are not clean relative paths.
func ParseIgnore(content []byte, extra ...string) Ignore {
	ig := Ignore{dirs: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 0, 4096), MaxPathLen+1)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for _, l := range append(lines, extra...) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		l = strings.TrimSuffix(path.Clean(l), "/")
		if ValidatePath(l) == nil {
			ig.dirs[l] = true
		}
	}
	return ig
}

// Skips reports whether rel (a slash-separated workspace path) is ignored
// itself. Callers do not descend into skipped directories.
func (ig Ignore) Skips(rel string) bool { return ig.dirs[rel] }

// IsConvenienceSymlink reports whether a workspace-root entry is one of
// Bazel's bazel-* output symlinks, which are never synced.
func IsConvenienceSymlink(rel string, isSymlink bool) bool {
	return isSymlink && !strings.Contains(rel, "/") && strings.HasPrefix(rel, "bazel-")
}
