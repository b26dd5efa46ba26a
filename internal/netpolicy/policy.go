package netpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// Mode is how a sandbox's egress is decided.
type Mode string

const (
	// ModeOffline: the platform's own endpoints only.
	ModeOffline Mode = "offline"
	// ModeAllowList: the platform's endpoints and the policy's names and
	// CIDRs; everything else is refused at once.
	ModeAllowList Mode = "allow-list"
	// ModeAudit lets traffic through and records every name and connection
	// the allow-list would have refused. The always-denied ranges stay
	// denied.
	ModeAudit Mode = "audit"
)

// ParseMode checks a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeOffline, ModeAllowList, ModeAudit:
		return m, nil
	}
	return "", fmt.Errorf("egress mode %q: want offline, allow-list or audit", s)
}

// Policy is one sandbox's egress policy.
type Policy struct {
	Mode Mode
	// Allow holds name patterns (example.com, *.example.com) and CIDRs or
	// addresses (140.82.112.0/20, 2606:50c0::/32, 192.0.2.7). Nothing here
	// opens an always-denied range.
	Allow []string
}

// PolicyFrom is the policy of an API document.
func PolicyFrom(p apiv1.EgressPolicy) Policy {
	return Policy{Mode: Mode(p.Mode), Allow: p.Allow}
}

// Limits on a policy's size and its entries.
const (
	maxAllowEntries = apiv1.MaxEgressAllow
	maxNameLen      = 253
	maxLabelLen     = 63
)

// compiled is a validated policy in the form the data plane uses.
type compiled struct {
	mode     Mode
	names    []namePattern
	prefixes []netip.Prefix
}

// namePattern is an allowed name: exact, or every name strictly below
// suffix (a "*." pattern).
type namePattern struct {
	name     string // lower case, no trailing dot
	wildcard bool
}

func (p namePattern) matches(name string) bool {
	if p.wildcard {
		return strings.HasSuffix(name, "."+p.name)
	}
	return name == p.name
}

// String is the pattern as written.
func (p namePattern) String() string {
	if p.wildcard {
		return "*." + p.name
	}
	return p.name
}

// compile validates p. Errors name the bad entry.
func (p Policy) compile() (compiled, error) {
	c := compiled{mode: p.Mode}
	if c.mode == "" {
		c.mode = ModeAllowList
	}
	if _, err := ParseMode(string(c.mode)); err != nil {
		return compiled{}, err
	}
	if len(p.Allow) > maxAllowEntries {
		return compiled{}, fmt.Errorf("egress allow-list: %d entries, at most %d", len(p.Allow), maxAllowEntries)
	}
	for _, e := range p.Allow {
		pfx, name, err := parseAllowEntry(e)
		if err != nil {
			return compiled{}, err
		}
		if name.name != "" {
			if !slices.Contains(c.names, name) {
				c.names = append(c.names, name)
			}
			continue
		}
		c.prefixes = append(c.prefixes, pfx)
	}
	return c, nil
}

// Validate checks p without building anything.
func (p Policy) Validate() error {
	_, err := p.compile()
	return err
}

// parseAllowEntry parses one allow-list entry: a CIDR, an address, or a
// name pattern. Exactly one of the results is set.
func parseAllowEntry(e string) (netip.Prefix, namePattern, error) {
	s := strings.TrimSpace(e)
	if s == "" {
		return netip.Prefix{}, namePattern{}, errors.New("egress allow-list: empty entry")
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, namePattern{}, fmt.Errorf("egress allow-list entry %q: %v", e, err)
		}
		return pfx.Masked(), namePattern{}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, namePattern{}, fmt.Errorf("egress allow-list entry %q: zoned address", e)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), namePattern{}, nil
	}
	n, err := parseNamePattern(s)
	if err != nil {
		return netip.Prefix{}, namePattern{}, fmt.Errorf("egress allow-list entry %q: %w", e, err)
	}
	return netip.Prefix{}, n, nil
}

func parseNamePattern(s string) (namePattern, error) {
	p := namePattern{}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		p.wildcard, s = true, rest
	}
	name, err := canonicalName(s)
	if err != nil {
		return namePattern{}, err
	}
	if p.wildcard && !strings.Contains(name, ".") {
		return namePattern{}, errors.New("a wildcard must stand below a domain with at least two labels (*.example.com)")
	}
	p.name = name
	return p, nil
}

// canonicalName checks a DNS name (letters, digits, hyphens and
// underscores in labels of 1-63 bytes, at most 253 bytes in all) and
// returns it lower case without a trailing dot.
func canonicalName(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" || len(s) > maxNameLen {
		return "", fmt.Errorf("name of %d bytes: want 1-%d", len(s), maxNameLen)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > maxLabelLen {
			return "", fmt.Errorf("label %q: want 1-%d bytes", l, maxLabelLen)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return "", fmt.Errorf("label %q: character %q is not allowed", l, c)
			}
		}
	}
	return s, nil
}

// allow is the policy's allow-list as entries.
func (c compiled) allow() []string {
	var out []string
	for _, n := range c.names {
		out = append(out, n.String())
	}
	for _, p := range c.prefixes {
		out = append(out, p.String())
	}
	return out
}

// allowsName reports whether the policy allows resolving name (canonical).
func (c compiled) allowsName(name string) bool {
	for _, p := range c.names {
		if p.matches(name) {
			return true
		}
	}
	return false
}
