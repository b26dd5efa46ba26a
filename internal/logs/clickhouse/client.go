package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client speaks ClickHouse's HTTP interface: a query in the body (or, for
// an insert, in the URL with the rows in the body), settings as URL
// parameters, the credentials in X-ClickHouse-User and X-ClickHouse-Key.
type client struct {
	base     *url.URL // scheme, host and path only
	user     string
	password string
	http     *http.Client
}

// settings are per-query ClickHouse settings.
type settings map[string]string

// maxAnswer bounds an answer read into memory.
const maxAnswer = 256 << 20

func (c *client) do(ctx context.Context, query string, body []byte, s settings) ([]byte, error) {
	u := *c.base
	q := url.Values{}
	for k, v := range s {
		q.Set(k, v)
	}
	var rd io.Reader
	if body != nil {
		q.Set("query", query)
		rd = bytes.NewReader(body)
	} else {
		rd = strings.NewReader(query)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-ClickHouse-User", c.user)
	if c.password != "" {
		req.Header.Set("X-ClickHouse-Key", c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return nil, &Error{Status: resp.StatusCode, Message: msg}
	}
	if len(out) > maxAnswer {
		return nil, fmt.Errorf("clickhouse: an answer over %d bytes", maxAnswer)
	}
	return out, nil
}

// Error is an answer of ClickHouse other than 200.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("clickhouse: %d: %s", e.Status, e.Message) }

// readSettings bound a read: its time, and (readonly=2) no query of it can
// change anything, whatever it says.
func readSettings(timeout time.Duration) settings {
	s := settings{"readonly": "2"}
	if timeout > 0 {
		s["max_execution_time"] = strconv.Itoa(max(1, int(timeout/time.Second)))
	}
	return s
}
