package registry

import (
	"path"
	"strings"
)

// validPattern reports whether p is a repository pattern: "/"-separated
// components, each "**" or a path.Match pattern of "*" and literal
// characters (no "?", "[", "\").
func validPattern(p string) bool {
	if p == "" || len(p) > maxNameLen+64 {
		return false
	}
	for c := range strings.SplitSeq(p, "/") {
		if c == "" || strings.ContainsAny(c, `?[]\`) {
			return false
		}
		if c != "**" && strings.Contains(c, "**") {
			return false
		}
	}
	return true
}

// matchPattern reports whether the repository name matches the pattern:
// "*" matches within one component, a "**" component any number of
// components (none included).
func matchPattern(pattern, name string) bool {
	return matchParts(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchParts(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchParts(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// matchAny reports whether name matches one of patterns; none matches
// everything when empty is true.
func matchAny(patterns []string, name string, empty bool) bool {
	if len(patterns) == 0 {
		return empty
	}
	for _, p := range patterns {
		if matchPattern(p, name) {
			return true
		}
	}
	return false
}
