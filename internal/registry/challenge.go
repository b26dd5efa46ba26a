package registry

import (
	"fmt"
	"strings"
)

// Challenge is one WWW-Authenticate challenge of an upstream registry.
type Challenge struct {
	// Scheme is lower case: "bearer" or "basic" (others are kept and
	// ignored by the caller).
	Scheme string
	Params map[string]string
}

// maxChallengeLen bounds what ParseChallenges reads of one header value.
const maxChallengeLen = 8 << 10

// ParseChallenges reads the challenges of WWW-Authenticate header values
// (RFC 9110 section 11.6.1): `scheme param="value", param=token, …`, with
// several challenges in one value separated by commas. Parameter names
// are lower-cased; quoted values are unescaped. A malformed value yields
// an error, never a partial challenge.
func ParseChallenges(values []string) ([]Challenge, error) {
	var out []Challenge
	for _, v := range values {
		if len(v) > maxChallengeLen {
			return nil, fmt.Errorf("%w: WWW-Authenticate longer than %d bytes", errUpstream, maxChallengeLen)
		}
		p := challengeParser{s: v}
		cs, err := p.parse()
		if err != nil {
			return nil, fmt.Errorf("%w: WWW-Authenticate %q: %v", errUpstream, clip(v), err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) parse() ([]Challenge, error) {
	var out []Challenge
	for {
		p.skip(" \t,")
		if p.i >= len(p.s) {
			return out, nil
		}
		scheme := p.token()
		if scheme == "" {
			return nil, fmt.Errorf("expected a scheme at %d", p.i)
		}
		c := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		p.skip(" \t")
		// Parameters until the next scheme (a token not followed by "=").
		for p.i < len(p.s) {
			save := p.i
			p.skip(" \t,")
			name := p.token()
			p.skip(" \t")
			if name == "" || p.i >= len(p.s) || p.s[p.i] != '=' {
				p.i = save
				break
			}
			p.i++ // '='
			p.skip(" \t")
			val, err := p.value()
			if err != nil {
				return nil, err
			}
			c.Params[strings.ToLower(name)] = val
			p.skip(" \t")
			if p.i < len(p.s) && p.s[p.i] != ',' {
				return nil, fmt.Errorf("expected ',' at %d", p.i)
			}
		}
		out = append(out, c)
		if p.i < len(p.s) && p.s[p.i] != ',' {
			// A token68 credential form or garbage: not something a
			// registry sends.
			return nil, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
		}
	}
}

func (p *challengeParser) skip(set string) {
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
}

// token reads an RFC 9110 token.
func (p *challengeParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *challengeParser) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		for p.i < len(p.s) {
			c := p.s[p.i]
			switch {
			case c == '"':
				p.i++
				return b.String(), nil
			case c == '\\' && p.i+1 < len(p.s):
				b.WriteByte(p.s[p.i+1])
				p.i += 2
			case c < ' ' && c != '\t' || c == 0x7f:
				return "", fmt.Errorf("control character in quoted string")
			default:
				b.WriteByte(c)
				p.i++
			}
		}
		return "", fmt.Errorf("unterminated quoted string")
	}
	v := p.token()
	if v == "" {
		return "", fmt.Errorf("expected a value at %d", p.i)
	}
	return v, nil
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
