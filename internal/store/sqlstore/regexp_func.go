package sqlstore

import (
	"database/sql/driver"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"modernc.org/sqlite"
)

// regexpFunc is the SQL function nimbus_regexp(pattern, text) on SQLite:
// 1 when text matches the Go regular expression pattern. A log search
// filters with it inside SQLite, so that only matching lines are sorted
// and read into Go, rather than every line of the range.
const regexpFunc = "nimbus_regexp"

func init() {
	sqlite.MustRegisterFunction(regexpFunc, &sqlite.FunctionImpl{
		NArgs:         2,
		Deterministic: true,
		// The arguments are views of SQLite's memory, valid during the
		// call: matching retains nothing of them (the cache clones).
		VolatileArgs: true,
		Scalar: func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			pattern, ok1 := args[0].(string)
			text, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%s(pattern, text): two texts", regexpFunc)
			}
			re, err := regexps.get(pattern)
			if err != nil {
				return nil, err
			}
			if re.MatchString(text) {
				return int64(1), nil
			}
			return int64(0), nil
		},
	})
}

// regexpCache holds compiled patterns: a statement calls the function
// once a row with the same pattern. It forgets everything past a bound.
type regexpCache struct {
	mu sync.Mutex
	m  map[string]*regexp.Regexp
}

var regexps = &regexpCache{m: map[string]*regexp.Regexp{}}

const maxCachedRegexps = 64

func (c *regexpCache) get(pattern string) (*regexp.Regexp, error) {
	c.mu.Lock()
	re, ok := c.m[pattern]
	c.mu.Unlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", regexpFunc, err)
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedRegexps {
		clear(c.m)
	}
	c.m[strings.Clone(pattern)] = re
	c.mu.Unlock()
	return re, nil
}
