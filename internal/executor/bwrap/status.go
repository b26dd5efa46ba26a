package bwrap

import (
	"encoding/json"
	"io"
)

// status is what bwrap reports on its --json-status-fd: one JSON object
// with the host pid of the sandbox's init ("child-pid") as soon as it
// exists, and one with the command's exit status ("exit-code") when it has
// run. bwrap writes no exit status when it could not set the sandbox up.
type status struct {
	initKnown chan struct{} // closed when initPID is set or the stream ended
	initPID   int           // 0 when bwrap never reported one
	done      chan struct{} // closed at the end of the stream
	exited    bool          // an exit status was reported; read after done
	exitCode  int
}

// readStatus reads r to its end in a goroutine, then closes it.
func readStatus(r io.ReadCloser) *status {
	s := &status{initKnown: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer r.Close()
		known := false
		markKnown := func() {
			if !known {
				known = true
				close(s.initKnown)
			}
		}
		defer markKnown()
		dec := json.NewDecoder(r)
		for {
			var m struct {
				ChildPID *int `json:"child-pid"`
				ExitCode *int `json:"exit-code"`
			}
			if err := dec.Decode(&m); err != nil {
				// Keep the pipe open until bwrap closes it: a write to a
				// closed pipe would kill it with SIGPIPE.
				_, _ = io.Copy(io.Discard, r)
				return
			}
			if m.ChildPID != nil && !known {
				s.initPID = *m.ChildPID
				markKnown()
			}
			if m.ExitCode != nil {
				s.exited, s.exitCode = true, *m.ExitCode
			}
		}
	}()
	return s
}
