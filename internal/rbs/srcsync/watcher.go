package srcsync

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher says whether anything in a workspace may have changed since it
// was last reset, from inotify events on every synced directory. When it
// cannot be sure (a watch failed, the event queue overflowed) it says so,
// and every sync scans.
type watcher struct {
	w       *fsnotify.Watcher
	dirty   atomic.Bool
	broken  atomic.Bool
	barrier string        // a file outside the workspace, see settle
	settled chan struct{} // an event of barrier was read

	mu      sync.Mutex
	watched map[string]bool
	done    chan struct{}
}

// newWatcher watches nothing yet; barrierDir (outside the workspace,
// created when missing, used for nothing else) holds the barrier file of
// settle.
func newWatcher(barrierDir string) (*watcher, error) {
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
	w := &watcher{w: fw, barrier: filepath.Join(barrierDir, "watch-barrier"), settled: make(chan struct{}, 1),
		watched: map[string]bool{}, done: make(chan struct{})}
	w.dirty.Store(true)
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
			w.dirty.Store(true)
		case _, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.broken.Store(true)
		}
	}
}

// unchanged reports whether no event was seen since the last reset.
func (w *watcher) unchanged() bool { return !w.dirty.Load() && !w.broken.Load() }

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

// reset starts a new observation; call it before scanning, so a change
// during the scan is seen by the next sync.
func (w *watcher) reset() { w.dirty.Store(false) }

// track watches exactly the directories of m under root.
func (w *watcher) track(root string, m Manifest) {
	want := map[string]bool{root: true}
	for p, e := range m {
		if e.Kind == Dir {
			want[filepath.Join(root, filepath.FromSlash(p))] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.watched {
		if !want[d] {
			w.w.Remove(d)
			delete(w.watched, d)
		}
	}
	for d := range want {
		if w.watched[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			// Out of watches, or the directory went away: a later scan
			// will tell; until then nothing is trusted.
			w.broken.Store(true)
			return
		}
		w.watched[d] = true
		// A change in d between the scan and this watch was not seen:
		// the next sync scans again, now under watch.
		w.dirty.Store(true)
	}
}

func (w *watcher) close() {
	w.w.Close()
	<-w.done
}
