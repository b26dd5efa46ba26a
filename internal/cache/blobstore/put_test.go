package blobstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestPutRoundTrip covers whole and dribbling readers, and sizes around
// Put's 1 MiB buffer.
func TestPutRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, (1 << 20) - 1, (1 << 20), 2*(1<<20) - 1, 2 * (1 << 20), 2*(1<<20) + 1, 5*(1<<20) + 3} {
		data := make([]byte, size)
		rand.Read(data)
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(data),
			"dribble":  iotest.HalfReader(bytes.NewReader(data)),
			"one-byte": iotest.OneByteReader(bytes.NewReader(data[:min(size, 300_000)])),
		} {
			want := data
			if name == "one-byte" {
				want = data[:min(size, 300_000)]
			}
			s := NewVerifying(NewMemory())
			ref := Ref{Org: "o", Kind: KindCAS, Digest: DigestOf(want)}
			if err := Put(context.Background(), s, ref, int64(len(want)), r); err != nil {
				t.Fatalf("size %d %s: %v", size, name, err)
			}
			got, err := GetBytes(context.Background(), s, ref, 1<<30)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("size %d %s: read back %d bytes, %v", size, name, len(got), err)
			}
		}
	}
}

// TestPutFailures: a short body, a long body and a failing body commit
// nothing.
func TestPutFailures(t *testing.T) {
	data := make([]byte, 3*(1<<20)+5)
	rand.Read(data)
	boom := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"short", bytes.NewReader(data[:len(data)-1]), ErrInvalid},
		{"long", bytes.NewReader(append(bytes.Clone(data), 'x')), ErrInvalid},
		{"failing", io.MultiReader(bytes.NewReader(data[:(1<<20)+7]), iotest.ErrReader(boom)), boom},
	} {
		for _, size := range []int{len(data), (1 << 20) / 2} {
			d := data[:size]
			r := tc.r
			if size != len(data) {
				// Same cases below the buffer size.
				switch tc.name {
				case "short":
					r = bytes.NewReader(d[:size-1])
				case "long":
					r = bytes.NewReader(append(bytes.Clone(d), 'x'))
				case "failing":
					r = io.MultiReader(bytes.NewReader(d[:100]), iotest.ErrReader(boom))
				}
			}
			m := NewMemory()
			ref := Ref{Org: "o", Kind: KindCAS, Digest: DigestOf(d)}
			if err := Put(context.Background(), NewVerifying(m), ref, int64(size), r); !errors.Is(err, tc.want) {
				t.Errorf("%s, %d bytes: %v, want %v", tc.name, size, err, tc.want)
			}
			if m.Len() != 0 {
				t.Errorf("%s, %d bytes: something was committed", tc.name, size)
			}
		}
	}
}

// failingStore's writers fail after a number of bytes.
type failingStore struct {
	*Memory
	after int
}

type failingWriter struct {
	Writer
	left int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errors.New("disk full")
	}
	w.left -= len(p)
	return w.Writer.Write(p)
}

func (s failingStore) NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error) {
	w, err := s.Memory.NewWriter(ctx, ref, size)
	return &failingWriter{Writer: w, left: s.after}, err
}

// TestPutWriteFailure: a store that fails mid-way stops the copy and
// nothing is committed.
func TestPutWriteFailure(t *testing.T) {
	data := make([]byte, 6*(1<<20))
	rand.Read(data)
	s := failingStore{Memory: NewMemory(), after: 2 * (1 << 20)}
	ref := Ref{Org: "o", Kind: KindCAS, Digest: DigestOf(data)}
	if err := Put(context.Background(), s, ref, int64(len(data)), bytes.NewReader(data)); err == nil {
		t.Fatal("Put succeeded through a failing writer")
	}
	if s.Len() != 0 {
		t.Error("something was committed")
	}
}
