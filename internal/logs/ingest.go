package logs

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Notice is the line that ends a job's log once its output reached the
// limit of limit bytes; what the job wrote after that is not kept.
func Notice(limit int64) string {
	return fmt.Sprintf("[nimbus: output truncated: this job's log reached its limit of %d bytes]", limit)
}

// ingest turns an upload's chunks into a Write. It is deterministic: the
// same state and chunks make the same write, whichever replica (or
// retry) makes it.
type ingest struct {
	org, job, repo string
	// limit bounds the bytes of output kept (≤ 0: none).
	limit int64
	now   time.Time
}

// apply makes the write of chunks (the next ones after st's cursor, in
// order, all of lease fence) onto st; end says the attempt's output is
// complete (its last line may lack a newline).
func (in ingest) apply(st State, fence int64, chunks []Chunk, end bool) Write {
	w := Write{Org: in.org, Job: in.job, Prev: st.Version}
	b := lineBuilder{in: in, st: st}
	b.st.Pending = bytes.Clone(st.Pending)
	// The lines are sized once: one per newline, and a few more (the
	// pending line, lines cut at MaxLine, the notice) grow it.
	n := 0
	for _, c := range chunks {
		n += bytes.Count(c.Data, []byte{'\n'})
	}
	b.lines = make([]Line, 0, n+1)
	if fence > st.Cursor.Fence && st.Cursor != Start {
		// A new attempt: the last one's unfinished line ends here, and no
		// step carries over.
		b.finishPending(st.Cursor)
		b.st.Step = ""
	}
	for _, c := range chunks {
		at := Cursor{Fence: fence, Seq: c.Seq}
		kept := b.add(c.Data, at)
		if len(kept) > 0 {
			w.Chunks = append(w.Chunks, Chunk{Org: in.org, Job: in.job, Fence: fence, Seq: c.Seq, Data: kept, At: in.now})
		}
		b.st.Cursor = at
	}
	if end && !b.st.Full {
		b.finishPending(b.st.Cursor)
	}
	b.st.Version = st.Version + 1
	if len(b.lines) == 0 {
		b.lines = nil // as when no line was made
	}
	w.State, w.Lines = b.st, b.lines
	return w
}

// lineBuilder cuts output into lines, keeping the state.
type lineBuilder struct {
	in    ingest
	st    State
	lines []Line
}

// add takes one chunk's data and returns what of it is kept: all of it,
// or (at the limit) what precedes the first line that does not fit,
// followed by the notice.
func (b *lineBuilder) add(data []byte, at Cursor) []byte {
	if b.st.Full {
		return nil
	}
	// text is data as a string once a complete line starts in it: such
	// lines are its substrings. clean: it is valid UTF-8 without NUL, so
	// they are kept as they are.
	var text string
	clean := false
	for pos := 0; pos < len(data); {
		seg := data[pos:]
		nl := bytes.IndexByte(seg, '\n')
		if nl >= 0 {
			seg = seg[:nl+1]
		}
		if b.in.limit > 0 && b.st.Used+int64(len(seg)) > b.in.limit {
			return b.cut(data[:pos], at)
		}
		b.st.Used += int64(len(seg))
		switch {
		case nl >= 0 && len(b.st.Pending) == 0:
			// A whole line of this chunk: no copy through Pending.
			if text == "" {
				text = string(data)
				clean = utf8.Valid(data) && bytes.IndexByte(data, 0) < 0
			}
			b.finish(text[pos:pos+nl+1], clean, at)
			b.st.Pending = nil
		case nl >= 0:
			b.st.Pending = append(b.st.Pending, seg...)
			b.finishPending(at)
		default:
			b.st.Pending = append(b.st.Pending, seg...)
			for len(b.st.Pending) >= MaxLine {
				rest := bytes.Clone(b.st.Pending[MaxLine:])
				b.st.Pending = b.st.Pending[:MaxLine]
				b.finishPending(at)
				b.st.Pending = rest
			}
		}
		pos += len(seg)
	}
	return data
}

// cut ends the log at its last complete line, with the notice. The line
// being written is not one of the log's lines (its start, stored with an
// earlier upload, shows in the raw output, where the notice goes on a
// line of its own): so the lines do not depend on how the output was cut
// into uploads.
func (b *lineBuilder) cut(kept []byte, at Cursor) []byte {
	out := bytes.Clone(kept)
	if len(b.st.Pending) > 0 {
		out = append(out, '\n')
		b.st.Pending = nil
	}
	notice := Notice(b.in.limit)
	out = append(out, notice...)
	out = append(out, '\n')
	b.emit(notice, true, StreamNimbus, at)
	b.st.Full = true
	return out
}

// finishPending ends the line being written, if any.
func (b *lineBuilder) finishPending(at Cursor) {
	if len(b.st.Pending) == 0 {
		return
	}
	b.finish(string(b.st.Pending), false, at)
	b.st.Pending = nil
}

// finish emits a line (its newline, if any, is not part of it); one
// longer than MaxLine goes on in the next. clean: the text is valid
// UTF-8 without NUL.
func (b *lineBuilder) finish(text string, clean bool, at Cursor) {
	text = strings.TrimSuffix(text, "\n")
	text = strings.TrimSuffix(text, "\r")
	for len(text) > MaxLine {
		// A cut may fall inside a rune: the pieces are checked.
		clean = false
		b.emit(text[:MaxLine], false, StreamOutput, at)
		text = text[MaxLine:]
	}
	b.emit(text, clean, StreamOutput, at)
}

// emit adds a line, following the step markers: a group's first line
// (::group::NAME, or the runner's ##[group]NAME) opens step NAME and
// belongs to it, its last (::endgroup::) belongs to it and closes it.
// clean: text is known valid UTF-8 without NUL.
func (b *lineBuilder) emit(text string, clean bool, stream string, at Cursor) {
	closes := false
	// A marker starts with blanks, ':' or '#': most lines need no look.
	if stream == StreamOutput && text != "" && strings.IndexByte(" \t:#", text[0]) >= 0 {
		t := strings.TrimLeft(text, " \t")
		switch {
		case strings.HasPrefix(t, "::group::"):
			b.st.Step = stepName(t[len("::group::"):])
		case strings.HasPrefix(t, "##[group]"):
			b.st.Step = stepName(t[len("##[group]"):])
		case strings.HasPrefix(t, "::endgroup::"), strings.HasPrefix(t, "##[endgroup]"):
			closes = true
		}
	}
	// Lines are text: what is not UTF-8 (or is NUL) shows as U+FFFD. The
	// chunks keep the bytes as written.
	if !clean {
		text = strings.ToValidUTF8(strings.ReplaceAll(text, "\x00", "\uFFFD"), "\uFFFD")
	}
	b.st.Lines++
	b.lines = append(b.lines, Line{Org: b.in.org, Job: b.in.job, Repo: b.in.repo, N: b.st.Lines, Fence: at.Fence, Seq: at.Seq,
		Step: b.st.Step, Stream: stream, At: b.in.now, Text: text})
	if closes {
		b.st.Step = ""
	}
}

// maxStep bounds a step's name.
const maxStep = 200

func stepName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxStep {
		s = s[:maxStep]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
