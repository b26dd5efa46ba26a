package agent

import (
	"bytes"
	"slices"
)

// minMasked is the shortest value masked: shorter ones would blank out
// ordinary output.
const minMasked = 8

// masker replaces the secrets a job was given (its lease's Mask: the
// job-scoped token, a runner's JIT config) with *** in its output, before
// the output leaves the process: it is never spooled, sent or stored.
// A secret may be split across writes, so the end of the output that
// could begin a secret is held back until the next write (or the end).
type masker struct {
	secrets [][]byte // longest first
	held    []byte
}

func newMasker(values []string) *masker {
	m := &masker{}
	for _, v := range values {
		if len(v) >= minMasked && !slices.ContainsFunc(m.secrets, func(s []byte) bool { return string(s) == v }) {
			m.secrets = append(m.secrets, []byte(v))
		}
	}
	if len(m.secrets) == 0 {
		return nil
	}
	slices.SortFunc(m.secrets, func(a, b []byte) int { return len(b) - len(a) })
	return m
}

var masked = []byte("***")

// mask takes the next output and returns what of it (and of what was held)
// can be passed on, masked.
func (m *masker) mask(p []byte) []byte {
	buf := append(m.held, p...)
	for _, s := range m.secrets {
		if bytes.Contains(buf, s) {
			buf = bytes.ReplaceAll(buf, s, masked)
		}
	}
	keep := m.partial(buf)
	m.held = bytes.Clone(buf[len(buf)-keep:])
	return buf[:len(buf)-keep]
}

// partial is the length of the longest end of buf that begins a secret.
func (m *masker) partial(buf []byte) int {
	best := 0
	for _, s := range m.secrets {
		for k := min(len(s)-1, len(buf)); k > best; k-- {
			if buf[len(buf)-k] == s[0] && bytes.Equal(buf[len(buf)-k:], s[:k]) {
				best = k
				break
			}
		}
	}
	return best
}

// flush returns what is held: the output has ended, so it is no secret.
func (m *masker) flush() []byte {
	out := m.held
	m.held = nil
	return out
}
