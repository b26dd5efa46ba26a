package logs

import (
	"bytes"
	"strings"
)

// refApply is ingest.apply as it was first written: every byte through
// State.Pending, every line checked for NUL and invalid UTF-8 on its own.
// It is kept as the reference that the ingest's faster paths must agree
// with, byte for byte (FuzzIngestMatchesReference).
func refApply(in ingest, st State, fence int64, chunks []Chunk, end bool) Write {
	w := Write{Org: in.org, Job: in.job, Prev: st.Version}
	b := refLineBuilder{in: in, st: st}
	b.st.Pending = bytes.Clone(st.Pending)
	if fence > st.Cursor.Fence && st.Cursor != Start {
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
	w.State, w.Lines = b.st, b.lines
	return w
}

type refLineBuilder struct {
	in    ingest
	st    State
	lines []Line
}

func (b *refLineBuilder) add(data []byte, at Cursor) []byte {
	if b.st.Full {
		return nil
	}
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
		b.st.Pending = append(b.st.Pending, seg...)
		if nl >= 0 {
			b.finishPending(at)
		} else {
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

func (b *refLineBuilder) cut(kept []byte, at Cursor) []byte {
	out := bytes.Clone(kept)
	if len(b.st.Pending) > 0 {
		out = append(out, '\n')
		b.st.Pending = nil
	}
	notice := Notice(b.in.limit)
	out = append(out, notice...)
	out = append(out, '\n')
	b.emit(notice, StreamNimbus, at)
	b.st.Full = true
	return out
}

func (b *refLineBuilder) finishPending(at Cursor) {
	if len(b.st.Pending) == 0 {
		return
	}
	text := b.st.Pending
	text = bytes.TrimSuffix(text, []byte{'\n'})
	text = bytes.TrimSuffix(text, []byte{'\r'})
	for len(text) > MaxLine {
		b.emit(string(text[:MaxLine]), StreamOutput, at)
		text = text[MaxLine:]
	}
	b.emit(string(text), StreamOutput, at)
	b.st.Pending = nil
}

func (b *refLineBuilder) emit(text, stream string, at Cursor) {
	closes := false
	if stream == StreamOutput {
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
	text = strings.ToValidUTF8(strings.ReplaceAll(text, "\x00", "\uFFFD"), "\uFFFD")
	b.st.Lines++
	b.lines = append(b.lines, Line{Org: b.in.org, Job: b.in.job, Repo: b.in.repo, N: b.st.Lines, Fence: at.Fence, Seq: at.Seq,
		Step: b.st.Step, Stream: stream, At: b.in.now, Text: text})
	if closes {
		b.st.Step = ""
	}
}
