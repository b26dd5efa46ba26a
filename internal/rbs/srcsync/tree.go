package srcsync

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// SyncStreamServer is the server end of Tunnel.Sync.
type SyncStreamServer = grpc.BidiStreamingServer[tunnelpb.SyncRequest, tunnelpb.SyncResponse]

// Result describes one applied sync, for the session's status.
type Result struct {
	Version  string
	Full     bool
	Written  []string // paths of files and symlinks written (at most 100 listed)
	NWritten int
	Deleted  int
	Bytes    int64 // content bytes received
	At       time.Time
}

// Tree is the agent's copy of a workspace. Its Serve method handles one
// Tunnel.Sync call at a time.
type Tree struct {
	dir       string
	staging   string
	statePath string
	uid       int // owner of what is written; -1 to leave it alone
	gid       int
	log       *slog.Logger

	mu       sync.Mutex
	version  string
	manifest Manifest
	scanner  *Scanner
	last     Result
}

// NewTree returns the tree rooted at dir (which must exist). Received
// contents are staged in staging (created, and emptied on each sync), which
// must be outside dir. When uid is not -1, everything written is owned by
// uid:gid. When statePath is set, the stat cache of the copy is kept there
// (outside dir), so a later Tree over the same copy (a new session of the
// same repository) rescans it without hashing it again.
func NewTree(dir, staging, statePath string, uid, gid int, log *slog.Logger) *Tree {
	t := &Tree{dir: dir, staging: staging, statePath: statePath, uid: uid, gid: gid, log: log, manifest: Manifest{}, scanner: NewScanner(dir, WithHashWorkers(2))}
	if statePath != "" {
		if b, err := os.ReadFile(statePath); err == nil {
			if st, err := decodeState(b); err == nil {
				t.scanner.cache = st.Cache
			}
		}
	}
	return t
}

// saveState keeps the copy's stat cache for a later Tree; the version is
// not kept, so the next client sends a full manifest.
func (t *Tree) saveState() {
	if t.statePath == "" {
		return
	}
	b := stateFile{Synced: Manifest{}, Cache: t.scanner.cache}.encode()
	tmp := t.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		os.Rename(tmp, t.statePath)
	}
}

// Last returns the result of the last applied sync.
func (t *Tree) Last() Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Serve handles one Sync call.
func (t *Tree) Serve(stream SyncStreamServer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx := stream.Context()
	req, err := recvManifest(stream)
	if err != nil {
		return err
	}
	if !req.full && (req.base == "" || req.base != t.version) {
		if err := stream.Send(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Need{Need: &tunnelpb.SyncNeed{Full: true}}}); err != nil {
			return err
		}
		if req, err = recvManifest(stream); err != nil {
			return err
		}
		if !req.full {
			return errors.New("sync: want a full manifest")
		}
	}
	base := t.manifest
	if req.full {
		// What is on disk is the truth: after an agent restart the
		// remembered manifest is empty, yet most files are already there.
		var scan ScanStats
		if base, scan, err = t.scanner.Scan(ctx); err != nil {
			return fmt.Errorf("sync: scan copy: %w", err)
		}
		if scan.Hashed > 0 {
			t.saveState()
		}
		req.upsert, req.del = Diff(base, req.entries)
	}
	next := make(Manifest, len(base)+len(req.upsert))
	for p, e := range base {
		next[p] = e
	}
	for _, p := range req.del {
		delete(next, p) // the client lists every path under a deleted directory
	}
	for _, p := range req.upsert {
		next[p] = req.entries[p]
	}
	if err := checkParents(next, req.upsert); err != nil {
		return err
	}

	// Contents we already hold (at some path of the current copy) are
	// copied locally; the rest is asked for.
	local := map[Digest]string{}
	for p, e := range base {
		if e.Kind == Regular {
			local[e.Digest] = p
		}
	}
	want := map[Digest]int64{}
	var copyLocal []Digest
	for _, p := range req.upsert {
		e := req.entries[p]
		if e.Kind != Regular {
			continue
		}
		if _, ok := want[e.Digest]; ok {
			continue
		}
		if _, ok := local[e.Digest]; ok {
			copyLocal = append(copyLocal, e.Digest)
			want[e.Digest] = -1
			continue
		}
		want[e.Digest] = e.Size
	}
	need := &tunnelpb.SyncNeed{}
	for d, size := range want {
		if size >= 0 {
			need.Digests = append(need.Digests, slices.Clone(d[:]))
		}
	}
	if err := os.RemoveAll(t.staging); err != nil {
		return fmt.Errorf("sync: clear staging: %w", err)
	}
	if err := os.MkdirAll(t.staging, 0o700); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer os.RemoveAll(t.staging)
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer root.Close()
	for _, d := range copyLocal {
		if err := t.stageLocal(root, local[d], d); err != nil {
			// The local copy is gone or changed: ask for it instead.
			want[d] = req.sizeOf(d)
			need.Digests = append(need.Digests, slices.Clone(d[:]))
		}
	}
	if err := stream.Send(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Need{Need: need}}); err != nil {
		return err
	}
	received, err := t.receiveBlobs(stream, want, len(need.Digests))
	if err != nil {
		return err
	}

	changed := len(req.upsert)+len(req.del) > 0
	if !changed && t.version != "" {
		return stream.Send(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Done{Done: &tunnelpb.SyncDone{Version: t.version}}})
	}
	res := Result{Full: req.full, Bytes: received, At: time.Now()}
	t.version = "" // a failure half way leaves the copy unknown: the next sync is full
	if err := t.apply(root, req, &res); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	res.Version = newVersion()
	t.version, t.manifest, t.last = res.Version, next, res
	t.log.Info("synced workspace", "full", res.Full, "written", res.NWritten, "deleted", res.Deleted, "bytes", res.Bytes)
	return stream.Send(&tunnelpb.SyncResponse{Msg: &tunnelpb.SyncResponse_Done{Done: &tunnelpb.SyncDone{
		Version: res.Version, Written: int64(res.NWritten), Deleted: int64(res.Deleted), Bytes: res.Bytes,
	}}})
}

type manifestReq struct {
	base    string
	full    bool
	entries Manifest // the upserted entries (all, when full)
	upsert  []string
	del     []string
}

func (r manifestReq) sizeOf(d Digest) int64 {
	for _, e := range r.entries {
		if e.Kind == Regular && e.Digest == d {
			return e.Size
		}
	}
	return 0
}

func recvManifest(stream SyncStreamServer) (manifestReq, error) {
	r := manifestReq{entries: Manifest{}}
	dels := map[string]bool{}
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if err != nil {
			return r, fmt.Errorf("sync: receive manifest: %w", err)
		}
		m := msg.GetManifest()
		if m == nil {
			return r, errors.New("sync: expected a manifest")
		}
		if first {
			r.base, r.full = m.GetBaseVersion(), m.GetFull()
		} else if m.GetBaseVersion() != r.base || m.GetFull() != r.full {
			return r, errors.New("sync: manifest parts disagree")
		}
		if len(r.entries)+len(dels)+len(m.GetUpsert())+len(m.GetDelete()) > MaxEntries {
			return r, fmt.Errorf("sync: more than %d entries", MaxEntries)
		}
		for _, fe := range m.GetUpsert() {
			p, e, err := EntryFromProto(fe, true)
			if err != nil {
				return r, fmt.Errorf("sync: %w", err)
			}
			if _, dup := r.entries[p]; dup {
				return r, fmt.Errorf("sync: %s listed twice", p)
			}
			r.entries[p] = e
			r.upsert = append(r.upsert, p)
		}
		for _, p := range m.GetDelete() {
			if err := ValidatePath(p); err != nil {
				return r, fmt.Errorf("sync: delete: %w", err)
			}
			if r.full {
				return r, errors.New("sync: deletions in a full manifest")
			}
			if dels[p] {
				return r, fmt.Errorf("sync: %s deleted twice", p)
			}
			dels[p] = true
			r.del = append(r.del, p)
		}
		if m.GetLast() {
			break
		}
	}
	for _, p := range r.upsert {
		if dels[p] {
			return r, fmt.Errorf("sync: %s both written and deleted", p)
		}
	}
	return r, nil
}

// checkParents makes sure every written path's parent is a directory of
// the resulting tree.
func checkParents(next Manifest, upsert []string) error {
	for _, p := range upsert {
		dir := path.Dir(p)
		if dir == "." {
			continue
		}
		if e, ok := next[dir]; !ok || e.Kind != Dir {
			return fmt.Errorf("sync: parent of %s is not a directory of the manifest", p)
		}
	}
	return nil
}

func (t *Tree) stagePath(d Digest) string { return filepath.Join(t.staging, hex.EncodeToString(d[:])) }

func (t *Tree) stageLocal(root *os.Root, rel string, d Digest) error {
	src, err := root.Open(filepath.FromSlash(rel))
	if err != nil {
		return err
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	dst, err := os.OpenFile(t.stagePath(d), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(dst, h), src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	var sum Digest
	h.Sum(sum[:0])
	if err == nil && sum != d {
		err = errors.New("content changed")
	}
	if err != nil {
		os.Remove(t.stagePath(d))
	}
	return err
}

func (t *Tree) receiveBlobs(stream SyncStreamServer, want map[Digest]int64, n int) (int64, error) {
	var total int64
	var cur *os.File
	var curDigest Digest
	var curHash hash.Hash
	var curSize int64
	done := 0
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	for done < n {
		msg, err := stream.Recv()
		if err != nil {
			return total, fmt.Errorf("sync: receive contents: %w", err)
		}
		b := msg.GetBlob()
		if b == nil {
			return total, errors.New("sync: expected contents")
		}
		var d Digest
		if len(b.GetDigest()) != len(d) {
			return total, errors.New("sync: bad digest")
		}
		copy(d[:], b.GetDigest())
		if cur == nil {
			size, ok := want[d]
			if !ok || size < 0 {
				return total, fmt.Errorf("sync: unexpected content %x", d)
			}
			if cur, err = os.OpenFile(t.stagePath(d), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
				return total, fmt.Errorf("sync: %w", err)
			}
			curDigest, curHash, curSize = d, sha256.New(), 0
			want[d] = -2 // received (or being received)
		} else if d != curDigest {
			return total, errors.New("sync: contents interleaved")
		}
		curSize += int64(len(b.GetData()))
		total += int64(len(b.GetData()))
		if curSize > MaxFileSize {
			return total, errors.New("sync: content too large")
		}
		curHash.Write(b.GetData())
		if _, err := cur.Write(b.GetData()); err != nil {
			return total, fmt.Errorf("sync: %w", err)
		}
		if b.GetLast() {
			var sum Digest
			curHash.Sum(sum[:0])
			if sum != curDigest {
				return total, fmt.Errorf("sync: content %x does not match its digest", curDigest)
			}
			if err := cur.Close(); err != nil {
				return total, fmt.Errorf("sync: %w", err)
			}
			cur = nil
			done++
		}
	}
	return total, nil
}

func (t *Tree) apply(root *os.Root, req manifestReq, res *Result) error {
	dels := slices.Clone(req.del)
	slices.SortFunc(dels, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range dels {
		if err := root.RemoveAll(filepath.FromSlash(p)); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
		res.Deleted++
	}
	ups := slices.Clone(req.upsert)
	slices.Sort(ups)
	for _, p := range ups {
		e := req.entries[p]
		name := filepath.FromSlash(p)
		switch e.Kind {
		case Dir:
			st, err := root.Lstat(name)
			if err == nil && st.IsDir() {
				continue
			}
			if err == nil {
				if err := root.Remove(name); err != nil {
					return fmt.Errorf("replace %s: %w", p, err)
				}
			}
			if err := root.Mkdir(name, 0o755); err != nil {
				return fmt.Errorf("mkdir %s: %w", p, err)
			}
			if err := t.chown(root, name); err != nil {
				return err
			}
		case Regular, Symlink:
			tmp := filepath.Join(filepath.Dir(name), ".nimbus-sync-"+newVersion()[:12])
			if err := t.create(root, tmp, e); err != nil {
				root.Remove(tmp)
				return fmt.Errorf("write %s: %w", p, err)
			}
			if st, err := root.Lstat(name); err == nil && st.IsDir() {
				if err := root.RemoveAll(name); err != nil {
					root.Remove(tmp)
					return fmt.Errorf("replace %s: %w", p, err)
				}
			}
			if err := root.Rename(tmp, name); err != nil {
				root.Remove(tmp)
				return fmt.Errorf("write %s: %w", p, err)
			}
			res.NWritten++
			if len(res.Written) < 100 {
				res.Written = append(res.Written, p)
			}
		}
	}
	return nil
}

func (t *Tree) create(root *os.Root, name string, e Entry) error {
	if e.Kind == Symlink {
		if err := root.Symlink(e.Target, name); err != nil {
			return err
		}
		return t.chown(root, name)
	}
	src, err := os.Open(t.stagePath(e.Digest))
	if err != nil {
		return err
	}
	defer src.Close()
	mode := fs.FileMode(0o644)
	if e.Exec {
		mode = 0o755
	}
	dst, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Chmod(mode) // not reduced by the umask
	}
	if err == nil && t.uid >= 0 {
		err = dst.Chown(t.uid, t.gid)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *Tree) chown(root *os.Root, name string) error {
	if t.uid < 0 {
		return nil
	}
	if err := root.Lchown(name, t.uid, t.gid); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	return nil
}

func newVersion() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
