package registry

import (
	"fmt"
	"slices"
	"strings"
)

// Actions on a repository, as the Docker token protocol names them.
const (
	actionPull = "pull"
	actionPush = "push"
)

// Scope is one requested or granted access: a repository and the actions
// on it.
type Scope struct {
	Name    string   `json:"n"`
	Actions []string `json:"a"`
}

// maxScopes bounds the scopes of one token request.
const maxScopes = 32

// ParseScopes reads the scope parameters of a token request: each value
// holds one or more space-separated "repository:<name>:<action>[,<action>]"
// items (name without ":"; "repository(plugin)" style classes are
// accepted and ignored). Other resource types (registry:catalog:*) are
// skipped: the registry grants nothing on them. Actions other than pull
// and push are dropped; "*" means both.
func ParseScopes(values []string) ([]Scope, error) {
	var out []Scope
	items := 0
	for _, v := range values {
		for item := range strings.FieldsSeq(v) {
			if items++; items > maxScopes {
				return nil, fmt.Errorf("%w: more than %d scopes", errBadScope, maxScopes)
			}
			typ, rest, ok := strings.Cut(item, ":")
			i := strings.LastIndexByte(rest, ':')
			if !ok || i < 0 {
				return nil, fmt.Errorf("%w: %q: want type:name:actions", errBadScope, clip(item))
			}
			if c, _, _ := strings.Cut(typ, "("); c != "repository" {
				continue
			}
			name, acts := rest[:i], rest[i+1:]
			if !ValidName(name) {
				return nil, fmt.Errorf("%w: %q", errBadName, clip(name))
			}
			s := Scope{Name: name}
			for a := range strings.SplitSeq(acts, ",") {
				switch a {
				case actionPull, actionPush:
					s.Actions = append(s.Actions, a)
				case "*":
					s.Actions = append(s.Actions, actionPull, actionPush)
				}
			}
			slices.Sort(s.Actions)
			s.Actions = slices.Compact(s.Actions)
			out = merge(out, s)
		}
	}
	return out, nil
}

// merge adds s to scopes, joining the actions of one name.
func merge(scopes []Scope, s Scope) []Scope {
	for i := range scopes {
		if scopes[i].Name == s.Name {
			a := append(slices.Clone(scopes[i].Actions), s.Actions...)
			slices.Sort(a)
			scopes[i].Actions = slices.Compact(a)
			return scopes
		}
	}
	return append(scopes, s)
}

// scopeString is the challenge's form of a scope.
func scopeString(name string, actions ...string) string {
	return "repository:" + name + ":" + strings.Join(actions, ",")
}
