package outputs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// writablePrefixes are the only places of the local output base the
// fetcher writes to: never server/ (the proxy's handshake), lock files or
// anything else of Bazel's.
var writablePrefixes = []string{"execroot/", "external/"}

// Stats describes one fetch.
type Stats struct {
	Entries    int
	Downloaded int
	Bytes      int64
	Links      int
	Duration   time.Duration
}

// Fetcher writes a remote command's outputs into the local output base.
type Fetcher struct {
	OutputBase string // local (and mirrored) output base
	Workspace  string // local workspace, for the bazel-* links
	Log        *slog.Logger
	cache      DigestCache
}

// Fetch brings paths (absolute, under the output base; runfiles trees of
// executables come along) and the workspace links from the agent. ctx
// must carry the session's metadata for client.
func (f *Fetcher) Fetch(ctx context.Context, client tunnelpb.TunnelClient, paths []string, links []*tunnelpb.FileEntry) (Stats, error) {
	start := time.Now()
	var st Stats
	var want []string
	for _, p := range paths {
		if _, ok := f.rel(p); ok {
			want = append(want, p)
		}
	}
	root, err := os.OpenRoot(f.OutputBase)
	if err != nil {
		return st, fmt.Errorf("fetch outputs: %w", err)
	}
	defer root.Close()
	if len(want) > 0 {
		entries, err := f.stat(ctx, client, want)
		if err != nil {
			return st, err
		}
		// Executables (files, or links such as an sh_binary's) come with
		// their runfiles tree, as after a local build.
		var runfiles []string
		for _, e := range entries {
			if k := e.GetKind(); k == tunnelpb.FileKind_FILE_KIND_SYMLINK || k == tunnelpb.FileKind_FILE_KIND_REGULAR && e.GetExecutable() {
				runfiles = append(runfiles, e.GetPath()+".runfiles", e.GetPath()+".runfiles_manifest")
			}
		}
		if len(runfiles) > 0 {
			more, err := f.stat(ctx, client, runfiles)
			if err != nil {
				return st, err
			}
			entries = append(entries, more...)
		}
		slices.SortFunc(entries, func(a, b *tunnelpb.FileEntry) int { return strings.Compare(a.GetPath(), b.GetPath()) })
		st.Entries = len(entries)
		download := map[string]*tunnelpb.FileEntry{}
		for _, e := range entries {
			rel, ok := f.rel(e.GetPath())
			if !ok {
				continue // outside what we write; the agent should not send it
			}
			if err := f.place(root, rel, e, download); err != nil {
				return st, fmt.Errorf("fetch outputs: %w", err)
			}
		}
		if len(download) > 0 {
			n, b, err := f.download(ctx, client, root, download)
			st.Downloaded, st.Bytes = n, b
			if err != nil {
				return st, fmt.Errorf("fetch outputs: %w", err)
			}
		}
	}
	for _, l := range links {
		ok, err := f.link(root, l)
		if err != nil {
			f.Log.Warn("workspace link", "name", l.GetPath(), "err", err)
		}
		if ok {
			st.Links++
		}
	}
	st.Duration = time.Since(start)
	return st, nil
}

func (f *Fetcher) stat(ctx context.Context, client tunnelpb.TunnelClient, paths []string) ([]*tunnelpb.FileEntry, error) {
	resp, err := client.Stat(ctx, &tunnelpb.StatRequest{Paths: paths})
	if err != nil {
		return nil, fmt.Errorf("fetch outputs: %w", err)
	}
	return resp.GetEntries(), nil
}

// rel returns p relative to the output base when the fetcher may write it.
func (f *Fetcher) rel(p string) (string, bool) {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return "", false
	}
	rel, ok := strings.CutPrefix(p, f.OutputBase+"/")
	if !ok {
		return "", false
	}
	for _, w := range writablePrefixes {
		if strings.HasPrefix(rel, w) {
			return rel, true
		}
	}
	return "", false
}

// place creates directories and symlinks and records files to download.
func (f *Fetcher) place(root *os.Root, rel string, e *tunnelpb.FileEntry, download map[string]*tunnelpb.FileEntry) error {
	cur, curErr := root.Lstat(rel)
	if curErr != nil {
		if err := root.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return err
		}
	}
	switch e.GetKind() {
	case tunnelpb.FileKind_FILE_KIND_DIRECTORY:
		if curErr == nil && cur.IsDir() {
			return nil
		}
		if curErr == nil {
			if err := root.Remove(rel); err != nil {
				return err
			}
		}
		return root.Mkdir(rel, 0o755)
	case tunnelpb.FileKind_FILE_KIND_SYMLINK:
		if t := e.GetTarget(); t == "" || strings.ContainsRune(t, 0) {
			return fmt.Errorf("%s: bad link target", rel)
		}
		if curErr == nil && cur.Mode()&fs.ModeSymlink != 0 {
			if old, err := root.Readlink(rel); err == nil && old == e.GetTarget() {
				return nil
			}
		}
		if curErr == nil {
			if err := root.RemoveAll(rel); err != nil {
				return err
			}
		}
		return root.Symlink(e.GetTarget(), rel)
	case tunnelpb.FileKind_FILE_KIND_REGULAR:
		if len(e.GetDigest()) != sha256.Size || e.GetSize() < 0 {
			return fmt.Errorf("%s: bad digest or size", rel)
		}
		if curErr == nil && cur.Mode().IsRegular() && cur.Size() == e.GetSize() {
			if lf, err := root.OpenFile(rel, os.O_RDONLY, 0); err == nil {
				d, _, err := f.cache.Digest(e.GetPath(), lf)
				lf.Close()
				if err == nil && string(d[:]) == string(e.GetDigest()) {
					if cur.Mode().Perm() == fileMode(e) {
						return nil
					}
					return root.Chmod(rel, fileMode(e))
				}
			}
		}
		download[e.GetPath()] = e
		return nil
	}
	return fmt.Errorf("%s: unknown kind", rel)
}

func fileMode(e *tunnelpb.FileEntry) fs.FileMode {
	if e.GetExecutable() {
		return 0o755
	}
	return 0o644
}

func (f *Fetcher) download(ctx context.Context, client tunnelpb.TunnelClient, root *os.Root, want map[string]*tunnelpb.FileEntry) (int, int64, error) {
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	stream, err := client.Read(ctx, &tunnelpb.ReadRequest{Paths: paths})
	if err != nil {
		return 0, 0, err
	}
	var (
		n     int
		total int64
		cur   *os.File
		tmp   string
		entry *tunnelpb.FileEntry
		h     = sha256.New()
		size  int64
	)
	defer func() {
		if cur != nil {
			cur.Close()
			root.Remove(tmp)
		}
	}()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, total, err
		}
		if cur == nil {
			e, ok := want[msg.GetPath()]
			if !ok {
				return n, total, fmt.Errorf("agent sent %q, which was not asked for", msg.GetPath())
			}
			delete(want, msg.GetPath())
			rel, _ := f.rel(e.GetPath())
			tmp = path.Join(path.Dir(rel), ".nimbus-fetch-"+randomSuffix())
			if cur, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return n, total, err
			}
			entry, size = e, 0
			h.Reset()
		} else if msg.GetPath() != entry.GetPath() {
			return n, total, errors.New("agent interleaved files")
		}
		size += int64(len(msg.GetData()))
		total += int64(len(msg.GetData()))
		if size > entry.GetSize() {
			return n, total, fmt.Errorf("%s is larger than described", entry.GetPath())
		}
		h.Write(msg.GetData())
		if _, err := cur.Write(msg.GetData()); err != nil {
			return n, total, err
		}
		if !msg.GetLast() {
			continue
		}
		if string(h.Sum(nil)) != string(entry.GetDigest()) {
			return n, total, fmt.Errorf("%s does not match its digest", entry.GetPath())
		}
		if err := cur.Chmod(fileMode(entry)); err != nil {
			return n, total, err
		}
		if err := cur.Close(); err != nil {
			cur = nil
			return n, total, err
		}
		cur = nil
		rel, _ := f.rel(entry.GetPath())
		if st, err := root.Lstat(rel); err == nil && st.IsDir() {
			root.RemoveAll(rel)
		}
		if err := root.Rename(tmp, rel); err != nil {
			root.Remove(tmp)
			return n, total, err
		}
		n++
	}
	if len(want) > 0 {
		return n, total, fmt.Errorf("agent did not send %d files", len(want))
	}
	return n, total, nil
}

// link recreates one bazel-* convenience symlink in the local workspace.
// It only ever replaces a symlink, and only points into the output base.
func (f *Fetcher) link(root *os.Root, l *tunnelpb.FileEntry) (bool, error) {
	name, target := l.GetPath(), l.GetTarget()
	if !strings.HasPrefix(name, "bazel-") || strings.ContainsAny(name, "/\x00") || name == "bazel-" {
		return false, errors.New("not a bazel-* name")
	}
	rel, ok := f.rel(target)
	if !ok {
		return false, fmt.Errorf("target %q is not under the output base", target)
	}
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return false, err
	}
	p := filepath.Join(f.Workspace, name)
	if cur, err := os.Lstat(p); err == nil {
		if cur.Mode()&fs.ModeSymlink == 0 {
			return false, fmt.Errorf("%s exists and is not a symlink", p)
		}
		if old, _ := os.Readlink(p); old == target {
			return true, nil
		}
	}
	tmp := p + ".nimbus-" + randomSuffix()
	if err := os.Symlink(target, tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
