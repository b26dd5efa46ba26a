package registry

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseRange reads a Range header against a blob of size bytes. ok is
// false when the whole blob is to be served: no header, a unit other
// than bytes, several ranges or a malformed one (RFC 9110 lets a server
// ignore those). A well-formed range the blob cannot satisfy is
// errBadRange (416).
func ParseRange(h string, size int64) (off, n int64, ok bool, err error) {
	spec, isBytes := strings.CutPrefix(h, "bytes=")
	if h == "" || !isBytes || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	s, e, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, nil
	}
	if s == "" { // the last N bytes
		last, good := decimal(e)
		if !good {
			return 0, 0, false, nil
		}
		if last == 0 || size == 0 {
			return 0, 0, false, fmt.Errorf("%w: %q of %d bytes", errBadRange, clip(h), size)
		}
		last = min(last, size)
		return size - last, last, true, nil
	}
	start, good := decimal(s)
	if !good {
		return 0, 0, false, nil
	}
	end := size - 1
	if e != "" {
		v, good := decimal(e)
		if !good || v < start {
			return 0, 0, false, nil
		}
		end = min(v, size-1)
	}
	if start >= size {
		return 0, 0, false, fmt.Errorf("%w: %q of %d bytes", errBadRange, clip(h), size)
	}
	return start, end - start + 1, true, nil
}

// parseContentRange reads an upload chunk's Content-Range: "S-E" as the
// spec writes it (inclusive), also with a "bytes " or "bytes=" prefix.
func parseContentRange(h string) (start, end int64, err error) {
	spec := strings.TrimPrefix(strings.TrimPrefix(h, "bytes "), "bytes=")
	spec, _, _ = strings.Cut(spec, "/")
	s, e, ok := strings.Cut(spec, "-")
	a, ok1 := decimal(s)
	b, ok2 := decimal(e)
	if !ok || !ok1 || !ok2 || b < a {
		return 0, 0, fmt.Errorf("%w: content-range %q", errBadRange, clip(h))
	}
	return a, b, nil
}

// decimal parses up to 18 digits (no sign, no spaces): never overflows.
func decimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}
