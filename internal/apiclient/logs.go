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
