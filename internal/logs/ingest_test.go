package logs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// ingestAll applies data cut at the given offsets, one upload per piece,
// the last with end, and returns the lines and the raw output kept.
func ingestAll(data []byte, cuts []int, limit int64) ([]Line, []byte, State) {
	in := ingest{org: "org_a", job: "job_1", limit: limit, now: time.Unix(0, 0)}
	st := State{Cursor: Start}
	var lines []Line
	var raw []byte
	prev, seq := 0, int64(0)
	cuts = append(cuts, len(data))
	for i, c := range cuts {
		c = min(max(c, prev), len(data))
		w := in.apply(st, 1, []Chunk{{Seq: seq, Data: data[prev:c]}}, i == len(cuts)-1)
		seq++
		prev = c
		st = w.State
		lines = append(lines, w.Lines...)
		for _, ch := range w.Chunks {
			raw = append(raw, ch.Data...)
		}
	}
	return lines, raw, st
}

// Job output is untrusted input: whatever it is and however it is cut
// into chunks, ingest makes the same lines (numbered from 1, valid UTF-8
// without NUL, at most MaxLine bytes), keeps the bytes as written, and
// with a limit stops at a line boundary with the notice last.
func FuzzIngest(f *testing.F) {
	f.Add([]byte("hello\nworld\r\n::group::Build\ncc\n::endgroup::\ntail"), []byte{3, 9, 20}, uint16(0))
	f.Add([]byte("\x00\xff\xfe\n\x1b[31mred\x1b[0m\n"), []byte{1}, uint16(8))
	f.Add(bytes.Repeat([]byte("y\n"), 100), []byte{7, 50, 51}, uint16(33))
	f.Add([]byte("##[group]Run x\n##[endgroup]\n"), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data, cutBytes []byte, limit uint16) {
		var cuts []int
		for _, b := range cutBytes {
			cuts = append(cuts, int(b)*len(data)/256)
		}
		lines, raw, st := ingestAll(data, cuts, int64(limit))
		whole, wholeRaw, _ := ingestAll(data, nil, int64(limit))
		if len(lines) != len(whole) {
			t.Fatalf("%d lines cut in chunks, %d in one", len(lines), len(whole))
		}
		for i := range lines {
			if lines[i].Text != whole[i].Text || lines[i].Step != whole[i].Step || lines[i].Stream != whole[i].Stream {
				t.Fatalf("line %d differs with the chunking: %+v vs %+v", i+1, lines[i], whole[i])
			}
		}
		if !st.Full && !bytes.Equal(raw, wholeRaw) {
			t.Fatalf("raw output differs with the chunking")
		}
		for i, l := range lines {
			if l.N != int64(i+1) || !utf8.ValidString(l.Text) || strings.IndexByte(l.Text, 0) >= 0 || len(l.Text) > MaxLine+2*utf8.UTFMax {
				t.Fatalf("line %d: %+v", i+1, l)
			}
		}
		if st.Lines != int64(len(lines)) {
			t.Fatalf("state counts %d lines, %d made", st.Lines, len(lines))
		}
		if limit == 0 || !st.Full {
			if !bytes.Equal(raw, data) {
				t.Fatalf("raw output %q, want %q", raw, data)
			}
			if st.Used != int64(len(data)) {
				t.Fatalf("used %d of %d bytes", st.Used, len(data))
			}
			return
		}
		notice := Notice(int64(limit))
		if lines[len(lines)-1].Text != notice || lines[len(lines)-1].Stream != StreamNimbus {
			t.Fatalf("full log's last line %+v", lines[len(lines)-1])
		}
		kept := raw[:len(raw)-len(notice)-1]
		if st.Used > int64(limit) || !bytes.HasPrefix(data, bytes.TrimSuffix(kept, []byte{'\n'})) {
			t.Fatalf("used %d of limit %d; kept %q of %q", st.Used, limit, kept, data)
		}
	})
}

// Steps follow the markers of both syntaxes; a step's name is bounded.
func TestIngestSteps(t *testing.T) {
	long := strings.Repeat("s", 300)
	lines, _, st := ingestAll([]byte("a\n::group::One\nb\n::endgroup::\n  ##[group]Two \nc\n##[endgroup]\n::group::"+long+"\nd\n"), nil, 0)
	var got []string
	for _, l := range lines {
		got = append(got, fmt.Sprintf("%s|%s", l.Step, l.Text))
	}
	want := []string{"|a", "One|::group::One", "One|b", "One|::endgroup::", "Two|  ##[group]Two ", "Two|c", "Two|##[endgroup]",
		long[:maxStep] + "|::group::" + long, long[:maxStep] + "|d"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st.Step != long[:maxStep] {
		t.Errorf("open step %q", st.Step)
	}
}
