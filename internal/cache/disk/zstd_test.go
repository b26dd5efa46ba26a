package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// compressible returns n bytes that zstd shrinks several times.
func compressible(seed, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString("line ")
		b.WriteString(string(rune('a' + (i*7+seed)%26)))
		b.WriteString(" of a build output that repeats itself\n")
	}
	return b.Bytes()[:n]
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// storedFile returns the path of ref's file and whether it is compressed.
func storedFile(t *testing.T, s *Store, ref blobstore.Ref) (string, bool) {
	t.Helper()
	e, ok := s.lookup(ref)
	if !ok {
		t.Fatalf("%s not indexed", ref)
	}
	return e.path, e.zstd
}

func getZstd(t *testing.T, s blobstore.ZstdStore, ref blobstore.Ref, offset, limit int64) ([]byte, error) {
	t.Helper()
	r, _, err := s.GetZstd(context.Background(), ref, offset, limit)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func decodeAll(t *testing.T, b []byte) []byte {
	t.Helper()
	d, _ := zstd.NewReader(nil)
	defer d.Close()
	out, err := d.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// TestCompressedAtRest: a CAS blob that compresses is stored as a .zst
// file and charged its stored bytes; a plain read decompresses it, ranges
// included; GetZstd serves the file's bytes after the header. Blobs that
// do not compress, small ones, action results and every blob of a store
// with NoCompression are stored as they came.
func TestCompressedAtRest(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	waitReady(t, s)
	v := blobstore.NewVerifying(s)
	small := compressible(0, 900)
	text := compressible(1, 64<<10)
	big := compressible(2, 3<<20+17) // past the sample: compressed while streaming
	noise := random(64 << 10)
	for _, b := range [][]byte{small, text, big, noise} {
		if err := blobstore.Put(context.Background(), v, cas("o", b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	ac := blobstore.Ref{Org: "o", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("action"))}
	put(t, v, ac, text)

	var stored int64
	for _, c := range []struct {
		name string
		ref  blobstore.Ref
		data []byte
		zstd bool
	}{
		{"small", cas("o", small), small, false},
		{"text", cas("o", text), text, true},
		{"big", cas("o", big), big, true},
		{"noise", cas("o", noise), noise, false},
		{"ac", ac, text, false},
	} {
		path, z := storedFile(t, s, c.ref)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		stored += fi.Size()
		if z != c.zstd || filepath.Ext(path) == ".zst" != c.zstd {
			t.Errorf("%s: compressed %v (%s), want %v", c.name, z, path, c.zstd)
		}
		if c.zstd && fi.Size() > int64(len(c.data))/4 {
			t.Errorf("%s: %d bytes stored for %d", c.name, fi.Size(), len(c.data))
		}
		got, err := get(t, v, c.ref)
		if err != nil || !bytes.Equal(got, c.data) {
			t.Errorf("%s: read back %d bytes, %v; want the %d written", c.name, len(got), err, len(c.data))
		}
		zs, err := getZstd(t, v, c.ref, 0, 0)
		switch {
		case !c.zstd && !errors.Is(err, blobstore.ErrNotZstd):
			t.Errorf("%s: GetZstd of a blob stored as it came: %v, want ErrNotZstd", c.name, err)
		case c.zstd && err != nil:
			t.Errorf("%s: GetZstd: %v", c.name, err)
		case c.zstd:
			file, _ := os.ReadFile(path)
			if !bytes.Equal(zs, file[zstdHeaderSize:]) {
				t.Errorf("%s: GetZstd does not serve the stored bytes", c.name)
			}
			if !bytes.Equal(decodeAll(t, zs), c.data) {
				t.Errorf("%s: GetZstd's stream does not decode to the blob", c.name)
			}
		}
	}
	if st := s.Stats(); st.Bytes != stored || s.OrgBytes("o") != stored {
		t.Errorf("accounting: store %d, org %d bytes; files hold %d", st.Bytes, s.OrgBytes("o"), stored)
	}

	// Ranges of a compressed blob, plain and compressed.
	ref := cas("o", big)
	for _, rg := range [][2]int64{{0, 1}, {5, 10}, {1 << 20, 300 << 10}, {int64(len(big)) - 3, 0}, {int64(len(big)), 0}} {
		r, size, err := v.Get(context.Background(), ref, rg[0], rg[1])
		if err != nil {
			t.Fatalf("Get%v: %v", rg, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		want := big[rg[0]:]
		if rg[1] > 0 {
			want = want[:rg[1]]
		}
		if err != nil || size != int64(len(big)) || !bytes.Equal(got, want) {
			t.Errorf("Get%v: %d bytes of %d, %v", rg, len(got), size, err)
		}
	}
	whole, _ := getZstd(t, v, ref, 0, 0)
	part, err := getZstd(t, v, ref, 100, 50)
	if err != nil || !bytes.Equal(part, whole[100:150]) {
		t.Errorf("GetZstd(100, 50): %v", err)
	}
	if _, err := getZstd(t, v, ref, int64(len(whole))+1, 0); !errors.Is(err, blobstore.ErrInvalid) {
		t.Errorf("GetZstd past the end: %v, want ErrInvalid", err)
	}

	off := openStore(t, t.TempDir(), Options{NoCompression: true})
	put(t, blobstore.NewVerifying(off), cas("o", text), text)
	if _, z := storedFile(t, off, cas("o", text)); z {
		t.Error("NoCompression: stored compressed")
	}
	if _, err := off.NewZstdWriter(context.Background(), cas("o", big)); !errors.Is(err, blobstore.ErrNotZstd) {
		t.Errorf("NoCompression: NewZstdWriter: %v, want ErrNotZstd", err)
	}
}

// TestCompressedUploadStoredAsSent: a zstd stream written through
// NewZstdWriter (behind Verifying) is kept byte for byte, whatever encoder
// made it, and read back without an encoder; one that decodes to other
// content, or is not zstd, is refused and leaves nothing.
func TestCompressedUploadStoredAsSent(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	waitReady(t, s)
	v := blobstore.NewVerifying(s)
	data := compressible(3, 200<<10)
	ref := cas("o", data)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(false))
	sent := enc.EncodeAll(data, nil)
	write := func(b []byte) error {
		w, err := blobstore.NewZstdWriter(context.Background(), v, ref)
		if err != nil {
			return err
		}
		defer w.Close()
		for len(b) > 0 { // in pieces, as from a stream
			n := min(len(b), 7000)
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return w.Commit(context.Background())
	}
	other := enc.EncodeAll(compressible(4, 200<<10), nil)
	for what, b := range map[string][]byte{"other content": other, "not zstd": data, "trailing bytes": append(bytes.Clone(sent), 1, 2, 3)} {
		if err := write(b); !errors.Is(err, blobstore.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
	if missing, _ := s.FindMissing(context.Background(), "o", blobstore.KindCAS, []blobstore.Digest{ref.Digest}); len(missing) != 1 {
		t.Fatal("a refused upload left the blob behind")
	}
	if err := write(sent); err != nil {
		t.Fatal(err)
	}
	before := blobstore.Compressions()
	got, err := getZstd(t, v, ref, 0, 0)
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("compressed read: %v; same bytes as sent: %v", err, bytes.Equal(got, sent))
	}
	if n := blobstore.Compressions() - before; n != 0 {
		t.Errorf("compressed read of a blob stored compressed used the encoder %d times", n)
	}
	if plain, err := get(t, v, ref); err != nil || !bytes.Equal(plain, data) {
		t.Errorf("plain read: %v", err)
	}
}

// TestCorruptCompressedBlob: a compressed file damaged on disk gives an
// error, never wrong bytes, whether zstd's own checksum catches it or (a
// stream sent without one) only the digest does, for blobs decoded in one
// piece and streamed; the damaged blob is dropped, so that the client
// uploads it again.
func TestCorruptCompressedBlob(t *testing.T) {
	for _, text := range []int{40 << 10, 400 << 10} {
		t.Run(fmt.Sprint(text>>10, "KiB"), func(t *testing.T) { testCorruptCompressedBlob(t, text) })
	}
}

func testCorruptCompressedBlob(t *testing.T, text int) {
	for _, c := range []struct {
		name   string
		crc    bool
		damage func(b []byte)
	}{
		{"payload, zstd checksum", true, func(b []byte) { b[len(b)/2] ^= 0x40 }},
		{"payload, no zstd checksum", false, nil},
		{"header size", true, func(b []byte) { b[8]++ }},
		{"header magic", true, func(b []byte) { b[0] = 'X' }},
		{"truncated", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), Options{})
			waitReady(t, s)
			v := blobstore.NewVerifying(s)
			// Stored blocks (incompressible runs) carry bytes as they are,
			// so a flipped bit there decodes without complaint.
			data := append(compressible(5, text), random(8<<10)...)
			ref := cas("o", data)
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(c.crc))
			w, err := blobstore.NewZstdWriter(context.Background(), v, ref)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(enc.EncodeAll(data, nil))
			if err := w.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			path, _ := storedFile(t, s, ref)
			b, _ := os.ReadFile(path)
			switch {
			case c.name == "truncated":
				b = b[:len(b)-5]
			case c.damage != nil:
				c.damage(b)
			default:
				// Inside the random tail, which zstd stores as it is.
				i := bytes.Index(b, data[len(data)-300:len(data)-200])
				if i < 0 {
					t.Fatal("the random tail is not stored verbatim")
				}
				b[i+50] ^= 0x01
			}
			os.WriteFile(path, b, 0o600)
			got, err := get(t, v, ref)
			if err == nil || len(got) >= len(data) {
				t.Fatalf("read of a damaged blob: %d bytes, err %v", len(got), err)
			}
			if !errors.Is(err, blobstore.ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
			if missing, _ := s.FindMissing(context.Background(), "o", blobstore.KindCAS, []blobstore.Digest{ref.Digest}); len(missing) != 1 {
				t.Error("the damaged blob is still listed")
			}
		})
	}
}

// TestCompressedSurvivesRestart: compressed entries keep their form and
// sizes across a restart with the snapshot and across a rebuild from the
// files alone (the size comes from the header).
func TestCompressedSurvivesRestart(t *testing.T) {
	for _, snapshot := range []bool{true, false} {
		dir := t.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		waitReady(t, s)
		text, noise := compressible(6, 50<<10), random(5000)
		put(t, blobstore.NewVerifying(s), cas("o", text), text)
		put(t, blobstore.NewVerifying(s), cas("o", noise), noise)
		want := s.Stats()
		s.Close()
		if !snapshot {
			os.Remove(filepath.Join(dir, "index"))
		}
		s = openStore(t, dir, Options{})
		if got, err := get(t, s, cas("o", text)); err != nil || !bytes.Equal(got, text) {
			t.Errorf("snapshot %v: read before the walk: %v", snapshot, err)
		}
		waitReady(t, s)
		if missing, _ := s.FindMissing(context.Background(), "o", blobstore.KindCAS, []blobstore.Digest{blobstore.DigestOf(text), blobstore.DigestOf(noise)}); len(missing) != 0 {
			t.Errorf("snapshot %v: missing %v", snapshot, missing)
		}
		if got := s.Stats(); got.Bytes != want.Bytes || got.Entries != want.Entries {
			t.Errorf("snapshot %v: stats %+v, want %+v", snapshot, got, want)
		}
		if _, z := storedFile(t, s, cas("o", text)); !z {
			t.Errorf("snapshot %v: compressed form lost", snapshot)
		}
		if got, err := get(t, s, cas("o", text)); err != nil || !bytes.Equal(got, text) {
			t.Errorf("snapshot %v: read: %v", snapshot, err)
		}
	}
}

// TestStoreFromBeforeCompression: a store written before blobs were kept
// compressed (files as they came, a version 1 index snapshot) opens with
// everything readable, and new blobs are compressed beside the old ones.
func TestStoreFromBeforeCompression(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoCompression: true})
	if err != nil {
		t.Fatal(err)
	}
	old := compressible(7, 30<<10)
	put(t, blobstore.NewVerifying(s), cas("o", old), old)
	s.Close()
	downgradeSnapshot(t, filepath.Join(dir, "index"))

	s = openStore(t, dir, Options{})
	if s.Len() != 1 {
		t.Fatalf("loaded %d entries from a version 1 snapshot, want 1", s.Len())
	}
	waitReady(t, s)
	if got, err := get(t, s, cas("o", old)); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("old blob: %v", err)
	}
	if _, z := storedFile(t, s, cas("o", old)); z {
		t.Error("old blob changed form")
	}
	if got, _, err := blobstore.GetZstd(context.Background(), blobstore.NewVerifying(s), cas("o", old), 0, 0); err != nil {
		t.Errorf("compressed read of an old blob: %v", err)
	} else {
		b, _ := io.ReadAll(got)
		got.Close()
		if !bytes.Equal(decodeAll(t, b), old) {
			t.Error("compressed read of an old blob: wrong content")
		}
	}
	fresh := compressible(8, 30<<10)
	put(t, blobstore.NewVerifying(s), cas("o", fresh), fresh)
	if _, z := storedFile(t, s, cas("o", fresh)); !z {
		t.Error("new blob not compressed")
	}
	if st := s.Stats(); st.Bytes >= int64(len(old)+len(fresh)) || st.Bytes <= int64(len(old)) {
		t.Errorf("accounting: %d bytes for a %d-byte old blob and a compressed %d-byte one", st.Bytes, len(old), len(fresh))
	}
}

// downgradeSnapshot rewrites a version 2 index snapshot as version 1.
func downgradeSnapshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:len(b)-4]
	var out []byte
	out = append(out, b[:8]...)
	out = binary.LittleEndian.AppendUint32(out, 1)
	p := 12
	norgs := int(binary.LittleEndian.Uint32(b[p:]))
	p += 4
	start := p
	for range norgs {
		p += 2 + int(binary.LittleEndian.Uint16(b[p:]))
	}
	out = append(out, b[start-4:p]...)
	n := int(binary.LittleEndian.Uint64(b[p:]))
	out = append(out, b[p:p+8]...)
	p += 8
	for range n {
		out = append(out, b[p:p+recordSizeV1]...)
		p += recordSize
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEvictionCountsStoredBytes: the size limit and quotas count what the
// files take: compressed blobs whose sizes add up to several times the
// limit fit without an eviction.
func TestEvictionCountsStoredBytes(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxBytes: 200 << 10, DefaultQuota: Quota{Hard: 200 << 10}})
	waitReady(t, s)
	v := blobstore.NewVerifying(s)
	for i := range 8 {
		b := compressible(i, 100<<10)
		put(t, v, cas("o", b), b)
	}
	if st := s.Stats(); st.Evictions != 0 || st.Entries != 8 || st.Bytes > 200<<10 {
		t.Errorf("8 compressible 100 KiB blobs under a 200 KiB limit: %+v", st)
	}
}

func FuzzParseZstdHeader(f *testing.F) {
	f.Add(appendZstdHeader(nil, 0))
	f.Add(appendZstdHeader(nil, 12345))
	f.Add([]byte("NMBZ\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"))
	f.Add([]byte("NMBZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		size, err := parseZstdHeader(b)
		if err != nil {
			return
		}
		if size < 0 {
			t.Fatalf("negative size %d", size)
		}
		if !bytes.Equal(appendZstdHeader(nil, size), b[:zstdHeaderSize]) {
			t.Fatalf("header %x parses to %d, which writes another header", b[:zstdHeaderSize], size)
		}
	})
}

// FuzzZstdUpload: whatever a client sends as a compressed upload, the
// store commits it only when it decodes to exactly the digest's content,
// and then serves that content plain, and compressed the bytes sent (or,
// when another org stored the blob first, that org's: the orgs share one
// file); it never panics or hangs.
func FuzzZstdUpload(f *testing.F) {
	content := compressible(9, 3000)
	enc, _ := zstd.NewWriter(nil)
	good := enc.EncodeAll(content, nil)
	f.Add(good, 100)
	f.Add(good[:len(good)-3], 7)
	f.Add(append(bytes.Clone(good), good...), 0)
	f.Add(enc.EncodeAll(content[:2999], nil), 50)
	f.Add([]byte("not zstd at all"), 3)
	s := openStore(f, f.TempDir(), Options{NoSync: true})
	v := blobstore.NewVerifying(s)
	d := blobstore.DigestOf(content)
	orgs := 0
	f.Fuzz(func(t *testing.T, sent []byte, cut int) {
		ref := blobstore.Ref{Org: fmt.Sprint("org", orgs), Kind: blobstore.KindCAS, Digest: d}
		ctx := context.Background()
		w, err := blobstore.NewZstdWriter(ctx, v, ref)
		if err != nil {
			t.Fatal(err)
		}
		cut = min(max(cut, 0), len(sent))
		_, err = w.Write(sent[:cut])
		if err == nil {
			_, err = w.Write(sent[cut:])
		}
		if err == nil {
			err = w.Commit(ctx)
		}
		w.Close()
		if err != nil {
			if !errors.Is(err, blobstore.ErrInvalid) {
				t.Fatalf("refused with %v, want ErrInvalid", err)
			}
			return
		}
		orgs++ // the next input goes to an org without the blob
		if got, err := get(t, v, ref); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("committed upload reads back %d bytes, %v", len(got), err)
		}
		got, err := getZstd(t, v, ref, 0, 0)
		if err != nil {
			t.Fatalf("committed upload's compressed read: %v", err)
		}
		if orgs == 1 && !bytes.Equal(got, sent) {
			t.Fatal("the first org's compressed read is not what it sent")
		}
		if !bytes.Equal(decodeAll(t, got), content) {
			t.Fatal("committed upload's compressed read decodes to other content")
		}
	})
}
