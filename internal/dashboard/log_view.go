package dashboard

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/logs"
)

// LogSource is what the dashboard reads of the jobs' output
// (internal/logs): the job page's log is the raw output (chunks, and
// Follow for a live tail), which the page splits into lines, folds into
// steps (::group:: and ##[group] markers) and searches in the browser;
// the search page searches the lines of every job of the org.
type LogSource interface {
	// Follow calls fn with org's job's output after the cursor, in order,
	// until the job has finished and everything is delivered (follow) or
	// what is stored now is delivered (!follow).
	Follow(ctx context.Context, org, job string, after logs.Cursor, follow bool, fn func([]logs.Chunk) error) error
	// Search finds the lines of org's jobs that match (logs.ErrInvalid:
	// a bad pattern or range; bounded in lines, bytes and time).
	Search(ctx context.Context, org string, p logs.SearchParams) (logs.Result, error)
}

// maxEvent bounds the text of one log event.
const maxEvent = 512 << 10

// parseCursor reads "FENCE.SEQ" (the stream's event ids).
func parseCursor(s string) (logs.Cursor, bool) {
	if s == "" {
		return logs.Start, true
	}
	f, q, ok := strings.Cut(s, ".")
	fence, err1 := strconv.ParseInt(f, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || fence < 0 || seq < -1 {
		return logs.Cursor{}, false
	}
	return logs.Cursor{Fence: fence, Seq: seq}, true
}

// jobLog streams a job's output: events "out" carry text (valid UTF-8,
// a sequence cut inside a character is completed by the next event), each
// with the cursor after it as its id, so a reconnecting EventSource
// resumes (Last-Event-ID); "end" says the log is complete.
func (s *Server) jobLog(w http.ResponseWriter, r *http.Request, c *call) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if !ids.Valid("job", id) || s.Logs == nil {
		return notFound("job")
	}
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = r.URL.Query().Get("after")
	}
	after, ok := parseCursor(from)
	if !ok {
		return badRequest("after: want FENCE.SEQ, e.g. 1.41")
	}
	j, err := s.Jobs.Get(ctx, c.Session.Org, id)
	if err != nil {
		return err
	}
	e, err := startSSE(w)
	if err != nil {
		return err
	}
	var carry []byte
	var text strings.Builder
	flush := func(cur logs.Cursor) error {
		if text.Len() == 0 {
			return nil
		}
		err := e.send("out", strconv.FormatInt(cur.Fence, 10)+"."+strconv.FormatInt(cur.Seq, 10), map[string]string{"t": text.String()})
		text.Reset()
		return err
	}
	err = s.Logs.Follow(ctx, c.Session.Org, id, after, !j.State.Terminal(), func(chunks []logs.Chunk) error {
		var cur logs.Cursor
		for _, ch := range chunks {
			b := append(carry, ch.Data...)
			n := validPrefix(b)
			text.WriteString(strings.ToValidUTF8(string(b[:n]), "\uFFFD"))
			carry = append([]byte(nil), b[n:]...)
			cur = logs.Cursor{Fence: ch.Fence, Seq: ch.Seq}
			if text.Len() >= maxEvent {
				if err := flush(cur); err != nil {
					return err
				}
			}
		}
		return flush(cur)
	})
	if err != nil {
		return err
	}
	if len(carry) > 0 {
		e.send("out", "", map[string]string{"t": strings.ToValidUTF8(string(carry), "\uFFFD")})
	}
	j, err = s.Jobs.Get(ctx, c.Session.Org, id)
	if err != nil {
		return err
	}
	return e.send("end", "", map[string]string{"state": string(j.State)})
}

// validPrefix is how much of b ends on a whole UTF-8 sequence: an
// incomplete sequence at the end (at most 3 bytes) waits for the next
// chunk.
func validPrefix(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		i := len(b) - k
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// jobLogRaw serves a job's output as it was written (?download=1: as a
// file).
func (s *Server) jobLogRaw(w http.ResponseWriter, r *http.Request, c *call) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if !ids.Valid("job", id) || s.Logs == nil {
		return notFound("job")
	}
	if _, err := s.Jobs.Get(ctx, c.Session.Org, id); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("download") == "1" {
		w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.log"`)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	err := s.Logs.Follow(ctx, c.Session.Org, id, logs.Start, false, func(chunks []logs.Chunk) error {
		for _, ch := range chunks {
			if _, err := bw.Write(ch.Data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}
