package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// Chunks go to segment files in order, read back as written, and their
// segments are removed once acknowledged.
func TestLogSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool", "job_1-1")
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	chunk := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1<<20) }
	for i := range 10 {
		if err := s.add(int64(i), chunk(i)); err != nil {
			t.Fatal(err)
		}
	}
	files := func() int {
		es, _ := os.ReadDir(dir)
		return len(es)
	}
	if n := files(); n != 3 {
		t.Errorf("%d segment files for 10 MiB, want 3 of at most 4 MiB", n)
	}
	got, err := s.peek(7, 3<<20)
	if err != nil || len(got) != 3 || got[0].Seq != 0 || got[2].Seq != 2 || got[0].Fence != 7 || !bytes.Equal(got[1].Data, chunk(1)) {
		t.Fatalf("peek: %d chunks, %v", len(got), err)
	}
	if !s.ack(4) || s.ack(3) {
		t.Error("ack")
	}
	if n := files(); n != 2 || s.bytes != 5<<20 || s.len() != 5 {
		t.Errorf("after acknowledging 5 chunks: %d files, %d bytes, %d chunks", n, s.bytes, s.len())
	}
	got, _ = s.peek(7, 1)
	if len(got) != 1 || got[0].Seq != 5 || !bytes.Equal(got[0].Data, chunk(5)) {
		t.Errorf("peek after ack: %+v", got[0].Seq)
	}
	s.ack(9)
	if n := files(); n != 0 || s.len() != 0 {
		t.Errorf("all acknowledged: %d files, %d chunks", n, s.len())
	}
	if err := s.add(10, []byte("more")); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool left after close: %v", err)
	}
}

// downServer fails every upload while down, like a server that is not
// there, and keeps chunks once up.
type downServer struct {
	mu     sync.Mutex
	down   bool
	chunks []apiv1.LogChunk
	fails  int
}

func (d *downServer) upload(_ context.Context, chunks []apiv1.LogChunk, _ bool) (apiv1.LogsAck, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		d.fails++
		if d.fails%2 == 0 {
			return apiv1.LogsAck{}, &apiclient.Error{Status: 429, RetryAfter: time.Millisecond}
		}
		return apiv1.LogsAck{}, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	}
	for _, c := range chunks {
		if c.Seq == int64(len(d.chunks)) {
			d.chunks = append(d.chunks, c)
		}
	}
	return apiv1.LogsAck{Seq: int64(len(d.chunks)) - 1}, nil
}

// While the server is down (or answers 429), the job's output goes to
// the spool on disk, up to its bound, and the job writes on; when the
// server is back, the spool drains in order, once, and is removed.
func TestLogStreamerSpoolsWhileTheServerIsDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log-spool", "job_1-3")
	d := &downServer{down: true}
	s := newLogStreamer(logStreamerOptions{fence: 3, upload: d.upload, maxChunk: 64 << 10, maxBatch: 1 << 20, maxUnacked: 16 << 20,
		spoolDir: dir, flushInterval: time.Millisecond, maxBackoff: 20 * time.Millisecond, log: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() { done <- s.run(context.Background()) }()
	var want bytes.Buffer
	for i := range 100_000 {
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i%40))
		want.WriteString(line)
		s.Write([]byte(line))
	}
	s.flush()
	var onDisk int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			onDisk += fi.Size()
		}
		return nil
	})
	if onDisk != int64(want.Len()) {
		t.Errorf("%d bytes spooled on disk while the server was down, want all %d", onDisk, want.Len())
	}
	d.mu.Lock()
	d.down = false
	fails := d.fails
	d.mu.Unlock()
	s.finish()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for i, c := range d.chunks {
		if c.Seq != int64(i) || c.Fence != 3 {
			t.Fatalf("chunk %d: seq %d fence %d", i, c.Seq, c.Fence)
		}
		got.Write(c.Data)
	}
	if got.String() != want.String() {
		t.Errorf("uploaded %d bytes, want %d (first difference at %d)", got.Len(), want.Len(), firstDiff(got.String(), want.String()))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool left: %v", err)
	}
	t.Logf("%d uploads refused while down; %d chunks uploaded after", fails, len(d.chunks))
}

// A secret the job was given never leaves in its output, however the
// output is cut into writes; the rest passes unchanged.
func TestMaskerAcrossWrites(t *testing.T) {
	const token = "eyJhbGciOiJFZERTQSJ9.secret-part.signature"
	out := "token=" + token + "\nagain " + token + token + " end"
	want := "token=***\nagain ****** end"
	for cut1 := 0; cut1 <= len(out); cut1 += 3 {
		for cut2 := cut1; cut2 <= len(out); cut2 += 7 {
			m := newMasker([]string{token, "short", ""})
			var got []byte
			for _, p := range []string{out[:cut1], out[cut1:cut2], out[cut2:]} {
				got = append(got, m.mask([]byte(p))...)
			}
			got = append(got, m.flush()...)
			if string(got) != want {
				t.Fatalf("cut at %d, %d: %q, want %q", cut1, cut2, got, want)
			}
		}
	}
	if m := newMasker([]string{"short", ""}); m != nil {
		t.Error("a masker for values too short to mask")
	}
}

// With one secret, masking as output streams in equals masking it whole.
func FuzzMasker(f *testing.F) {
	f.Add("secret-token-value", "xx secret-token-value yy secret-token-valu", []byte{3, 20})
	f.Add("aaaaaaaa", "aaaaaaaaaaaaaaaaa", []byte{1, 2, 9})
	f.Fuzz(func(t *testing.T, secret, out string, cuts []byte) {
		m := newMasker([]string{secret})
		if m == nil {
			return
		}
		var got []byte
		prev := 0
		for _, c := range cuts {
			at := min(max(int(c)*len(out)/256, prev), len(out))
			got = append(got, m.mask([]byte(out[prev:at]))...)
			prev = at
		}
		got = append(got, m.mask([]byte(out[prev:]))...)
		got = append(got, m.flush()...)
		if want := strings.ReplaceAll(out, secret, "***"); string(got) != want {
			t.Fatalf("masked %q as %q, want %q", out, got, want)
		}
	})
}

// An upload holds at most apiv1.MaxLogChunks chunks, however small: a
// backlog of tiny chunks goes in several.
func TestPeekBoundsChunks(t *testing.T) {
	s, err := openSpool(filepath.Join(t.TempDir(), "spool", "job_1-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var q memQueue
	for i := range apiv1.MaxLogChunks + 5 {
		if err := s.add(int64(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		q.add(int64(i), []byte("x"))
	}
	for name, queue := range map[string]interface {
		peek(int64, int) ([]apiv1.LogChunk, error)
	}{"spool": s, "memory": &q} {
		got, err := queue.peek(1, 8<<20)
		if err != nil || len(got) != apiv1.MaxLogChunks {
			t.Errorf("%s: peek gave %d chunks, %v; want %d", name, len(got), err, apiv1.MaxLogChunks)
		}
	}
}
