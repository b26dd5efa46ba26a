package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/logs"
)

// parseCursor reads "FENCE.SEQ" (the position after which to read).
func parseCursor(s string) (logs.Cursor, error) {
	if s == "" {
		return logs.Start, nil
	}
	f, q, ok := strings.Cut(s, ".")
	fence, err1 := strconv.ParseInt(f, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || fence < 0 || seq < -1 {
		return logs.Cursor{}, badRequest("after: want FENCE.SEQ, e.g. 1.41")
	}
	return logs.Cursor{Fence: fence, Seq: seq}, nil
}

// logsQuery is what GET /api/v1/jobs/{id}/logs asks for.
type logsQuery struct {
	format string // text, ndjson (chunks), lines or sse
	follow bool
	after  logs.Cursor
	lines  logs.LineQuery
	// byLine: read lines (from_line, step, lines, sse) rather than chunks.
	byLine bool
}

func parseLogsQuery(r *http.Request) (logsQuery, error) {
	q := r.URL.Query()
	lq := logsQuery{format: q.Get("format"), follow: q.Get("follow") == "1" || q.Get("follow") == "true", lines: logs.LineQuery{From: 1}}
	switch lq.format {
	case "":
		lq.format = "text"
	case "text", "ndjson", "lines", "sse":
	default:
		return lq, badRequest("format: text, ndjson, lines or sse")
	}
	var err error
	if lq.after, err = parseCursor(q.Get("after")); err != nil {
		return lq, err
	}
	if v := q.Get("from_line"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return lq, badRequest("from_line: a line number from 1")
		}
		lq.lines.From = n
	}
	// Server-Sent Events resume after the last event the client saw.
	if id := r.Header.Get("Last-Event-ID"); id != "" && lq.format == "sse" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return lq, badRequest("Last-Event-ID: a line number")
		}
		lq.lines.From = n + 1
	}
	lq.lines.Step = q.Get("step")
	if len(lq.lines.Step) > 200 {
		return lq, badRequest("step: at most 200 bytes")
	}
	lq.byLine = lq.format == "lines" || lq.format == "sse" || q.Has("from_line") || q.Has("step")
	if lq.byLine && lq.format == "ndjson" {
		return lq, badRequest("format ndjson gives chunks: use format=lines with from_line or step")
	}
	if lq.byLine && q.Has("after") {
		return lq, badRequest("after is a chunk cursor: use from_line with lines")
	}
	return lq, nil
}

// jobLogs serves a job's output: raw chunks (text, or ndjson with their
// cursors), or its lines (text, ndjson lines, or Server-Sent Events),
// once or followed until the job ends.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	lq, err := parseLogsQuery(r)
	if err != nil {
		return err
	}
	if _, err := s.Jobs.Get(r.Context(), p.Org, id); err != nil {
		return err
	}
	switch lq.format {
	case "ndjson", "lines":
		w.Header().Set("Content-Type", "application/x-ndjson")
	case "sse":
		w.Header().Set("Content-Type", "text/event-stream")
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 64<<10)
	flusher, _ := w.(http.Flusher)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if lq.byLine {
		err = s.Logs.FollowLines(r.Context(), p.Org, id, lq.lines, lq.follow, func(lines []logs.Line) error {
			for _, l := range lines {
				if err := writeLine(bw, lq.format, l); err != nil {
					return err
				}
			}
			return flush()
		})
	} else {
		enc := json.NewEncoder(bw)
		err = s.Logs.Follow(r.Context(), p.Org, id, lq.after, lq.follow, func(chunks []logs.Chunk) error {
			for _, c := range chunks {
				if lq.format == "ndjson" {
					if err := enc.Encode(apiv1.LogChunk{Fence: c.Fence, Seq: c.Seq, Data: c.Data}); err != nil {
						return err
					}
				} else if _, err := bw.Write(c.Data); err != nil {
					return err
				}
			}
			return flush()
		})
	}
	bw.Flush()
	return err
}

func writeLine(w io.Writer, format string, l logs.Line) error {
	switch format {
	case "lines":
		b, err := json.Marshal(lineJSON(l))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "sse":
		b, err := json.Marshal(lineJSON(l))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "id: %d\ndata: %s\n\n", l.N, b)
		return err
	}
	_, err := fmt.Fprintf(w, "%s\n", l.Text)
	return err
}

func lineJSON(l logs.Line) apiv1.LogLine {
	return apiv1.LogLine{Job: l.Job, Repo: l.Repo, Line: l.N, Step: l.Step, Stream: l.Stream, At: l.At.UTC(), Text: l.Text}
}

// parseSince reads a time: RFC 3339, or a duration before now ("7d",
// "36h").
func parseSince(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 && n <= 100_000 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, badRequest("%s: a time (RFC 3339) or how long ago (7d, 36h)", name)
}

// searchLogs searches the lines of the org's jobs.
func (s *Server) searchLogs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	now := s.Now()
	since, err := parseSince("since", q.Get("since"), now)
	if err != nil {
		return err
	}
	until, err := parseSince("until", q.Get("until"), now)
	if err != nil {
		return err
	}
	sp := logs.SearchParams{Pattern: q.Get("q"), Repo: q.Get("repo"), Job: q.Get("job"), Since: since, Until: until}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > logs.MaxSearchLines {
			return badRequest("limit: 1-%d", logs.MaxSearchLines)
		}
		sp.Limit = n
	}
	res, err := s.Logs.Search(r.Context(), p.Org, sp)
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		return errorf(http.StatusServiceUnavailable, apiv1.CodeUnavailable, "the search took too long: narrow it (a shorter time range, a repository, a longer literal)")
	}
	if err != nil {
		return err
	}
	out := apiv1.LogSearch{Lines: []apiv1.LogLine{}, Jobs: []apiv1.LogSearchJob{}, Partial: res.Partial}
	for _, l := range res.Lines {
		out.Lines = append(out.Lines, lineJSON(l))
	}
	for _, j := range res.Jobs {
		out.Jobs = append(out.Jobs, apiv1.LogSearchJob{Job: j.Job, Repo: j.Repo, Matches: j.Matches, Latest: j.Latest.UTC()})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
