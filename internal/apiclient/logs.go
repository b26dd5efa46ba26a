package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// LogStream is a job's output as the server sends it, chunk by chunk.
type LogStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// Next returns the next chunk, or io.EOF after the last.
func (s *LogStream) Next() (apiv1.LogChunk, error) {
	var c apiv1.LogChunk
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			return c, err
		}
		return c, io.EOF
	}
	if err := json.Unmarshal(s.sc.Bytes(), &c); err != nil {
		return c, fmt.Errorf("log stream: %w", err)
	}
	return c, nil
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.body.Close() }

// LogCursor is the position after a chunk, as the server takes it.
func LogCursor(c apiv1.LogChunk) string {
	return strconv.FormatInt(c.Fence, 10) + "." + strconv.FormatInt(c.Seq, 10)
}

// JobLogs opens a job's output after the cursor (empty: from the start;
// else LogCursor of the last chunk seen). With follow, the stream goes on
// until the job has ended.
func (c *Client) JobLogs(ctx context.Context, id, after string, follow bool) (*LogStream, error) {
	q := url.Values{"format": {"ndjson"}}
	if follow {
		q.Set("follow", "1")
	}
	if after != "" {
		q.Set("after", after)
	}
	resp, err := c.Raw(ctx, http.MethodGet, apiv1.RouteJobLogs.URL(id)+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &LogStream{body: resp.Body, sc: sc}, nil
}

// FollowJobLogs calls fn with each chunk of a job's output, in order, until
// everything stored now is delivered or, with follow, until the job has
// ended and all of its output is delivered. A dropped connection or a
// server error is retried from the last chunk delivered, with backoff; an
// answer that retrying cannot change (a 4xx) is returned.
func (c *Client) FollowJobLogs(ctx context.Context, id string, follow bool, fn func(apiv1.LogChunk) error) error {
	cursor := ""
	for attempt := 0; ; attempt++ {
		s, err := c.JobLogs(ctx, id, cursor, follow)
		if err == nil {
			for {
				var ch apiv1.LogChunk
				if ch, err = s.Next(); err != nil {
					break
				}
				if err = fn(ch); err != nil {
					s.Close()
					return err
				}
				cursor = LogCursor(ch)
			}
			s.Close()
			if err == io.EOF {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(Backoff(attempt, 5*time.Second)):
		}
	}
}

// LineQuery selects a job's lines for FollowJobLines.
type LineQuery struct {
	From int64  // first line wanted (0: the first)
	Step string // only this step's lines (empty: all)
}

// FollowJobLines calls fn with each of a job's lines, in order, until
// every line stored now is delivered or, with follow, until the job has
// ended and all are. A dropped connection or a server error is retried
// from the line after the last delivered, with backoff; a 4xx is
// returned.
func (c *Client) FollowJobLines(ctx context.Context, id string, q LineQuery, follow bool, fn func(apiv1.LogLine) error) error {
	from := max(q.From, 1)
	for attempt := 0; ; attempt++ {
		v := url.Values{"format": {"lines"}, "from_line": {strconv.FormatInt(from, 10)}}
		if follow {
			v.Set("follow", "1")
		}
		if q.Step != "" {
			v.Set("step", q.Step)
		}
		resp, err := c.Raw(ctx, http.MethodGet, apiv1.RouteJobLogs.URL(id)+"?"+v.Encode(), nil)
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				var l apiv1.LogLine
				if err = json.Unmarshal(sc.Bytes(), &l); err != nil {
					err = fmt.Errorf("log lines: %w", err)
					break
				}
				if err = fn(l); err != nil {
					resp.Body.Close()
					return err
				}
				from = l.Line + 1
			}
			if err == nil {
				err = sc.Err()
			}
			resp.Body.Close()
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(Backoff(attempt, 5*time.Second)):
		}
	}
}

// LogSearchQuery is a search of the org's job logs.
type LogSearchQuery struct {
	// Pattern is an RE2 regular expression.
	Pattern string
	Repo    string
	Job     string
	// Since and Until: RFC 3339 times or how long ago ("7d", "36h");
	// empty: the server's default (the last 7 days).
	Since, Until string
	Limit        int
}

// SearchLogs finds the lines of the org's jobs matching a pattern, newest
// first, with counts per job.
func (c *Client) SearchLogs(ctx context.Context, q LogSearchQuery) (apiv1.LogSearch, error) {
	v := url.Values{"q": {q.Pattern}}
	for k, s := range map[string]string{"repo": q.Repo, "job": q.Job, "since": q.Since, "until": q.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return get[apiv1.LogSearch](ctx, c, apiv1.RouteSearchLogs, nil, v, nil)
}

// InsightsQuery narrows GET /api/v1/insights; zero fields take the
// server's defaults.
type InsightsQuery struct {
	Repo string
	// Since and Until: RFC 3339 times or how long ago ("7d", "36h");
	// empty: the last 7 days.
	Since, Until string
	// Jobs bounds the finished jobs counted (0: the server's 2,000).
	Jobs int
	// Lines is how many failing lines each flaky job shows (0: the
	// server's 10; negative: none).
	Lines int
}

// Insights reports the org's queue and run times, failure rates and
// flaky jobs.
func (c *Client) Insights(ctx context.Context, q InsightsQuery) (apiv1.Insights, error) {
	v := url.Values{}
	for k, s := range map[string]string{"repo": q.Repo, "since": q.Since, "until": q.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Jobs > 0 {
		v.Set("jobs", strconv.Itoa(q.Jobs))
	}
	switch {
	case q.Lines > 0:
		v.Set("lines", strconv.Itoa(q.Lines))
	case q.Lines < 0:
		v.Set("lines", "0")
	}
	return get[apiv1.Insights](ctx, c, apiv1.RouteInsights, nil, v, nil)
}
