package srcsync

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxDirtyDirs: beyond this many changed directories a full scan is as
// cheap as a partial one.
const maxDirtyDirs = 1000

// watcher records, from inotify events on every synced directory, which
// directories changed since it was last asked. When it cannot be sure (a
// watch failed, the event queue overflowed) it says so, and the next sync
// scans everything.
type watcher struct {
	w       *fsnotify.Watcher
	root    string
	broken  atomic.Bool   // a watch could not be added: never trusted again
	barrier string        // a file outside the workspace, see settle
	settled chan struct{} // an event of barrier was read

	mu      sync.Mutex
	full    bool            // everything must be scanned
	dirty   map[string]bool // workspace-relative directories that changed
	watched map[string]bool
	done    chan struct{}
}

// newWatcher watches nothing yet; barrierDir (outside the workspace,
// created when missing, used for nothing else) holds the barrier file of
// settle.
func newWatcher(root, barrierDir string) (*watcher, error) {
	if err := os.MkdirAll(barrierDir, 0o700); err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(barrierDir); err != nil {
		fw.Close()
		return nil, err
	}
	w := &watcher{w: fw, root: root, barrier: filepath.Join(barrierDir, "watch-barrier"), settled: make(chan struct{}, 1),
		full: true, dirty: map[string]bool{}, watched: map[string]bool{}, done: make(chan struct{})}
	go w.run()
	return w, nil
}

func (w *watcher) run() {
	defer close(w.done)
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if ev.Name == w.barrier {
				select {
				case w.settled <- struct{}{}:
				default:
				}
				continue
			}
			w.changed(ev.Name)
		case _, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.setFull()
		}
	}
}

// changed records an event about name: its directory must be read again.
func (w *watcher) changed(name string) {
	rel, err := filepath.Rel(w.root, filepath.Dir(name))
	if err != nil || !filepath.IsLocal(rel) && rel != "." || name == w.root || name == filepath.Join(w.root, ".bazelignore") {
		w.setFull()
		return
	}
	if rel == "." {
		rel = ""
	}
	w.mu.Lock()
	w.dirty[filepath.ToSlash(rel)] = true
	w.mu.Unlock()
}

func (w *watcher) setFull() {
	w.mu.Lock()
	w.full = true
	w.mu.Unlock()
}

// take returns what changed since the last take and starts a new
// observation. Call it before scanning, so a change during the scan is
// seen by the next sync.
func (w *watcher) take() (dirs []string, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	full = w.full || w.broken.Load() || len(w.dirty) > maxDirtyDirs
	for d := range w.dirty {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	w.full, w.dirty = false, map[string]bool{}
	return dirs, full
}

// settle makes sure every change made before it was called has been seen:
// inotify delivers one instance's events in order, so once the event of
// a write to the barrier file is read, all earlier ones were too.
func (w *watcher) settle() bool {
	select {
	case <-w.settled:
	default:
	}
	if err := os.WriteFile(w.barrier, nil, 0o600); err != nil {
		return false
	}
	select {
	case <-w.settled:
		return true
	case <-time.After(time.Second):
		return false
	}
}

// track watches exactly the directories of m.
func (w *watcher) track(m Manifest) {
	want := map[string]bool{"": true}
	for p, e := range m {
		if e.Kind == Dir {
			want[p] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.watched {
		if !want[d] {
			w.w.Remove(filepath.Join(w.root, filepath.FromSlash(d)))
			delete(w.watched, d)
		}
	}
	for d := range want {
		if w.watched[d] {
			continue
		}
		if err := w.w.Add(filepath.Join(w.root, filepath.FromSlash(d))); err != nil {
			// Out of watches, or the directory went away: nothing is
			// trusted any more; every sync scans.
			w.broken.Store(true)
			return
		}
		w.watched[d] = true
		// A change in d between the scan and this watch was not seen.
		w.dirty[d] = true
	}
}

func (w *watcher) close() {
	w.w.Close()
	<-w.done
}
