package disk

import (
	"sync"
)

// groupSync makes writes durable in groups: every caller of wait needs one
// sync round that started after its writes; one caller runs the round and
// the others that arrived meanwhile share it.
type groupSync struct {
	sync func() error

	mu        sync.Mutex
	cond      *sync.Cond
	running   bool
	started   uint64 // rounds started
	completed uint64 // rounds finished
	lastErr   error
}

func newGroupSync(fn func() error) *groupSync {
	g := &groupSync{sync: fn}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait returns once a sync round that started after the call has finished.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A round already running may have started before our writes.
	need := g.started + 1
	for g.completed < need {
		if !g.running {
			g.running = true
			g.started++
			round := g.started
			g.mu.Unlock()
			err := g.sync()
			g.mu.Lock()
			g.running = false
			g.completed = round
			g.lastErr = err
			g.cond.Broadcast()
			if round >= need {
				return err
			}
			continue
		}
		g.cond.Wait()
	}
	return g.lastErr
}
