package srcsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// ErrChanged means a file changed between the scan and its upload; syncing
// again picks up the new content.
var ErrChanged = errors.New("file changed during sync")

// Stats describes one sync.
type Stats struct {
	Scan     ScanStats
	Full     bool  // the whole manifest was sent
	Upserted int   // entries sent as new or changed
	Deleted  int   // paths sent as deleted
	Blobs    int   // contents uploaded
	Bytes    int64 // content bytes uploaded
	Written  int64 // files the agent wrote
	// Skipped: nothing changed since the last sync to this session
	// (according to inotify), so neither a scan nor a call was needed.
	Skipped  bool
	Duration time.Duration
}

// SyncStreamClient is the client end of Tunnel.Sync.
type SyncStreamClient = grpc.BidiStreamingClient[tunnelpb.SyncRequest, tunnelpb.SyncResponse]

// Client syncs one workspace to remote sessions. Its state (the stat cache
// and what was last synced to which session) is kept in a file so a
// restarted proxy stays incremental. It is not safe for concurrent use.
type Client struct {
	workspace string
	statePath string
	scanner   *Scanner
	log       *slog.Logger

	sessionID string
	version   string
	synced    Manifest
	watch     *watcher
}

// Watch makes later syncs skip the scan, and the agent, when inotify saw
// nothing change in the workspace since the last sync. Without it (or when
// the watches fail) every sync scans.
func (c *Client) Watch() error {
	w, err := newWatcher(c.workspace, filepath.Join(filepath.Dir(c.statePath), "watch"))
	if err != nil {
		return err
	}
	c.watch = w
	return nil
}

// changes says what to scan: nothing (no directory listed, not full), the
// directories inotify saw change, or everything.
func (c *Client) changes(sessionID string) (dirs []string, full bool) {
	if c.watch == nil {
		return nil, true
	}
	if sessionID != c.sessionID || c.version == "" || !c.watch.settle() {
		c.watch.take()
		return nil, true
	}
	return c.watch.take()
}

// Close stops watching.
func (c *Client) Close() {
	if c.watch != nil {
		c.watch.close()
	}
}

// NewClient returns a client for the workspace at root, persisting its
// state at statePath (ignored, and rebuilt, when unreadable).
func NewClient(root, statePath string, log *slog.Logger, opts ...ScannerOption) *Client {
	c := &Client{workspace: root, statePath: statePath, scanner: NewScanner(root, opts...), log: log, synced: Manifest{}}
	if err := c.load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("ignoring sync state", "path", statePath, "err", err)
	}
	return c
}

// Sync brings the session's copy up to date. open starts a Tunnel.Sync call
// (tunnelpb.TunnelClient.Sync with the session's metadata).
func (c *Client) Sync(ctx context.Context, sessionID string, open func(context.Context) (SyncStreamClient, error)) (Stats, error) {
	start := time.Now()
	var (
		m    Manifest
		scan ScanStats
		err  error
	)
	switch dirs, full := c.changes(sessionID); {
	case !full && len(dirs) == 0:
		return Stats{Skipped: true, Duration: time.Since(start)}, nil
	case !full:
		m, scan, err = c.scanner.Rescan(ctx, c.synced, dirs)
	default:
		m, scan, err = c.scanner.Scan(ctx)
	}
	if err != nil {
		if c.watch != nil {
			c.watch.setFull()
		}
		return Stats{}, err
	}
	ok := false
	defer func() {
		if c.watch != nil && !ok {
			c.watch.setFull()
		}
	}()
	st := Stats{Scan: scan}
	if sessionID != c.sessionID {
		c.version, c.synced = "", Manifest{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := open(ctx)
	if err != nil {
		return st, fmt.Errorf("sync: %w", err)
	}
	full := c.version == ""
	if err := c.sendManifest(stream, m, full, &st); err != nil {
		return st, err
	}
	need, err := recvNeed(stream)
	if err != nil {
		return st, err
	}
	if need.GetFull() {
		if full {
			return st, errors.New("sync: agent asked for a full manifest twice")
		}
		c.log.Info("agent asked for a full sync")
		if err := c.sendManifest(stream, m, true, &st); err != nil {
			return st, err
		}
		if need, err = recvNeed(stream); err != nil {
			return st, err
		}
		if need.GetFull() {
			return st, errors.New("sync: agent asked for a full manifest twice")
		}
	}
	if err := c.sendBlobs(stream, m, need.GetDigests(), &st); err != nil {
		return st, err
	}
	if err := stream.CloseSend(); err != nil {
		return st, fmt.Errorf("sync: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return st, fmt.Errorf("sync: %w", err)
	}
	done := resp.GetDone()
	if done == nil || done.GetVersion() == "" {
		return st, errors.New("sync: agent did not confirm")
	}
	st.Written = done.GetWritten()
	ok = true
	if c.watch != nil {
		c.watch.track(m)
	}
	changed := c.version != done.GetVersion() || c.sessionID != sessionID || st.Scan.Hashed > 0
	c.sessionID, c.version, c.synced = sessionID, done.GetVersion(), m
	if changed {
		if err := c.save(); err != nil {
			c.log.Warn("saving sync state", "err", err)
		}
	}
	st.Duration = time.Since(start)
	return st, nil
}

func recvNeed(stream SyncStreamClient) (*tunnelpb.SyncNeed, error) {
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	need := resp.GetNeed()
	if need == nil {
		return nil, errors.New("sync: agent answered out of order")
	}
	return need, nil
}

func (c *Client) sendManifest(stream SyncStreamClient, m Manifest, full bool, st *Stats) error {
	var upsert, del []string
	if full {
		upsert = make([]string, 0, len(m))
		for p := range m {
			upsert = append(upsert, p)
		}
	} else {
		upsert, del = Diff(c.synced, m)
	}
	slices.Sort(upsert)
	slices.Sort(del)
	st.Full, st.Upserted, st.Deleted = full, len(upsert), len(del)
	msg := &tunnelpb.SyncManifest{BaseVersion: c.version, Full: full}
	flush := func(last bool) error {
		msg.Last = last
		if err := stream.Send(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Manifest{Manifest: msg}}); err != nil {
			return fmt.Errorf("sync: send manifest: %w", err)
		}
		msg = &tunnelpb.SyncManifest{BaseVersion: c.version, Full: full}
		return nil
	}
	for _, p := range upsert {
		msg.Upsert = append(msg.Upsert, m[p].ToProto(p))
		if len(msg.Upsert)+len(msg.Delete) >= maxBatch {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	for _, p := range del {
		msg.Delete = append(msg.Delete, p)
		if len(msg.Upsert)+len(msg.Delete) >= maxBatch {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	return flush(true)
}

func (c *Client) sendBlobs(stream SyncStreamClient, m Manifest, digests [][]byte, st *Stats) error {
	if len(digests) == 0 {
		return nil
	}
	byDigest := make(map[Digest]string, len(digests))
	for _, d := range digests {
		var dg Digest
		if len(d) != len(dg) {
			return fmt.Errorf("sync: agent asked for a %d-byte digest", len(d))
		}
		copy(dg[:], d)
		byDigest[dg] = ""
	}
	for p, e := range m {
		if e.Kind != Regular {
			continue
		}
		if have, ok := byDigest[e.Digest]; ok && have == "" {
			byDigest[e.Digest] = p
		}
	}
	buf := make([]byte, blobChunk)
	for dg, p := range byDigest {
		if p == "" {
			return fmt.Errorf("sync: agent asked for content %s that is not in the workspace", hex.EncodeToString(dg[:]))
		}
		n, err := c.sendFile(stream, p, dg, buf)
		if err != nil {
			return err
		}
		st.Blobs++
		st.Bytes += n
	}
	return nil
}

func (c *Client) sendFile(stream SyncStreamClient, rel string, dg Digest, buf []byte) (int64, error) {
	f, err := os.Open(filepath.Join(c.workspace, filepath.FromSlash(rel)))
	if err != nil {
		return 0, fmt.Errorf("sync %s: %w", rel, err)
	}
	defer f.Close()
	h := sha256.New()
	var total int64
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 || err != nil {
			h.Write(buf[:n])
			total += int64(n)
			last := err != nil
			if last {
				var sum Digest
				h.Sum(sum[:0])
				if sum != dg {
					return total, fmt.Errorf("sync %s: %w", rel, ErrChanged)
				}
			}
			msg := &tunnelpb.Blob{Digest: dg[:], Data: buf[:n], Last: last}
			if err := stream.Send(&tunnelpb.SyncRequest{Msg: &tunnelpb.SyncRequest_Blob{Blob: msg}}); err != nil {
				return total, fmt.Errorf("sync: send %s: %w", rel, err)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("sync %s: %w", rel, err)
		}
	}
}

func (c *Client) load() error {
	b, err := os.ReadFile(c.statePath)
	if err != nil {
		return err
	}
	st, err := decodeState(b)
	if err != nil {
		return err
	}
	c.sessionID, c.version, c.synced = st.SessionID, st.Version, st.Synced
	c.scanner.cache = st.Cache
	return nil
}

func (c *Client) save() error {
	b := stateFile{SessionID: c.sessionID, Version: c.version, Synced: c.synced, Cache: c.scanner.cache}.encode()
	if err := os.MkdirAll(filepath.Dir(c.statePath), 0o700); err != nil {
		return err
	}
	tmp := c.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath)
}
