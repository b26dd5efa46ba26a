package actionscache

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// parseRange parses a single "bytes=S-E", "bytes=S-" or "bytes=-N" range
// against size and returns the offset and length to serve.
func parseRange(h string, size int64) (off, n int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, fmt.Errorf("%w: range %q: want one bytes range", blobstore.ErrInvalid, h)
	}
	s, e, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: range %q", blobstore.ErrInvalid, h)
	}
	num := func(x string) (int64, error) {
		if x == "" || len(x) > 19 || strings.Trim(x, "0123456789") != "" {
			return 0, fmt.Errorf("%w: range %q", blobstore.ErrInvalid, h)
		}
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil { // 19 digits may still overflow
			return 0, fmt.Errorf("%w: range %q: %v", blobstore.ErrInvalid, h, err)
		}
		return v, nil
	}
	if s == "" { // suffix: the last N bytes
		last, err := num(e)
		if err != nil || last == 0 {
			return 0, 0, fmt.Errorf("%w: range %q", blobstore.ErrInvalid, h)
		}
		last = min(last, size)
		return size - last, last, nil
	}
	start, err := num(s)
	if err != nil {
		return 0, 0, err
	}
	end := size - 1
	if e != "" {
		if end, err = num(e); err != nil {
			return 0, 0, err
		}
		end = min(end, size-1)
	}
	if start >= size || end < start {
		return 0, 0, fmt.Errorf("%w: range %q outside %d bytes", blobstore.ErrInvalid, h, size)
	}
	return start, end - start + 1, nil
}

// parseContentRange parses "bytes S-E/*" or "bytes S-E/T" (a v1 chunk).
func parseContentRange(h string) (start, end int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("%w: content-range %q", blobstore.ErrInvalid, h)
	}
	rng, _, _ := strings.Cut(spec, "/")
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: content-range %q", blobstore.ErrInvalid, h)
	}
	start, err1 := blobstore.ParseSize(s)
	end, err2 := blobstore.ParseSize(e)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, fmt.Errorf("%w: content-range %q", blobstore.ErrInvalid, h)
	}
	return start, end, nil
}
