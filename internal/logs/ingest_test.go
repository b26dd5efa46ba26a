package logs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
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

// The ingest agrees byte for byte with refApply, the simple algorithm it
// was first written as, from any state (a line pending, near MaxLine, a
// new attempt, near or at the limit) and for any chunks: the same lines,
// chunks kept and state.
func FuzzIngestMatchesReference(f *testing.F) {
	f.Add([]byte("hello\nworld\r\n::group::Build\ncc\n::endgroup::\ntail"), []byte{3, 9, 20}, []byte("pend"), uint16(0), uint32(0), uint16(0), uint8(0), true)
	f.Add([]byte("\x00\xff\xfe\n\x1b[31mred\x1b[0m\n"), []byte{1}, []byte{}, uint16(0), uint32(8), uint16(0), uint8(1), false)
	f.Add([]byte("é€\n"), []byte{128}, []byte("x"), uint16(MaxLine-3), uint32(0), uint16(0), uint8(2), true)
	f.Add([]byte("ab\r"), []byte{}, []byte{}, uint16(MaxLine-1), uint32(0), uint16(0), uint8(4), false)
	f.Add([]byte("€"), []byte{}, []byte{}, uint16(0), uint32(0), uint16(0), uint8(4), false)
	f.Add([]byte("€"), []byte{}, []byte{}, uint16(0), uint32(0), uint16(0), uint8(4), false)
	f.Add(bytes.Repeat([]byte("y\n"), 100), []byte{7, 50, 51}, []byte("p"), uint16(0), uint32(150), uint16(20), uint8(0), true)
	f.Fuzz(func(t *testing.T, data, cutBytes, pending []byte, pad uint16, limit uint32, used uint16, mode uint8, end bool) {
		if mode&4 != 0 && len(data) > 0 {
			// Long lines: past MaxLine, cut anywhere (in a rune too).
			data = append(bytes.Repeat(data, MaxLine/len(data)+2), '\n')
		}
		pending = append(bytes.Repeat([]byte{'p'}, int(pad)%MaxLine), pending...)
		pending = pending[:min(len(pending), MaxLine-1)]
		if len(pending) == 0 && mode&8 != 0 {
			pending = nil
		}
		st := State{Version: 3, Cursor: Cursor{Fence: 1, Seq: 4}, Used: int64(len(pending)) + int64(used), Lines: 7, Pending: pending, Step: "s"}
		if mode&16 != 0 {
			st.Cursor = Start
		}
		fence := int64(1)
		if mode&1 != 0 {
			fence = 2 // a new attempt
		}
		in := ingest{org: "org_a", job: "job_1", repo: "r", limit: int64(limit) * int64(1+int(mode>>5)), now: time.Unix(5, 0)}
		var chunks []Chunk
		prev := 0
		for i, c := range append(cutBytes, 255) {
			at := max(prev, int(c)*len(data)/255)
			if i == len(cutBytes) {
				at = len(data)
			}
			chunks = append(chunks, Chunk{Seq: int64(5 + i), Data: data[prev:at]})
			prev = at
		}
		want := refApply(in, st, fence, chunks, end)
		got := in.apply(st, fence, chunks, end)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("ingest differs from the reference (-want +got):\n%s", diff)
		}
	})
}

// BenchmarkIngestApply applies one upload as the bench's agents send it:
// 512 KiB of ~70-byte lines in 64 KiB chunks.
func BenchmarkIngestApply(b *testing.B) {
	var chunks []Chunk
	var buf bytes.Buffer
	for i := 0; buf.Len() < 512<<10; i++ {
		fmt.Fprintf(&buf, "job %d line %d: compiling src/module_%04d/file.go (%d of %d)\n", 7, i, i%9999, i, 10000)
	}
	data := buf.Bytes()
	lines := bytes.Count(data, []byte{'\n'})
	for pos := 0; pos < len(data); {
		n := min(64<<10, len(data)-pos)
		if i := bytes.LastIndexByte(data[pos:pos+n], '\n'); i >= 0 && pos+n < len(data) {
			n = i + 1
		}
		chunks = append(chunks, Chunk{Seq: int64(len(chunks)), Data: data[pos : pos+n]})
		pos += n
	}
	in := ingest{org: "org_a", job: "job_1", limit: 1 << 30, now: time.Unix(0, 0)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		w := in.apply(State{Cursor: Start}, 1, chunks, true)
		if len(w.Lines) != lines {
			b.Fatalf("%d lines, want %d", len(w.Lines), lines)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}
