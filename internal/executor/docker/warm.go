package docker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/execinit"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
)

// Warm keeps containers of one image ready, so that a job leased for them
// starts at once: its container already exists and runs, and its init
// waits for the command. A warm container serves one job, is removed with
// it and replaced.
type Warm struct {
	// Image is the image of the containers; a job naming exactly this
	// reference can take one.
	Image string
	// Slots: each of the slots 0 … Slots-1 keeps one container ready,
	// made as that slot's uid (the agent fills its lowest free slot
	// first).
	Slots int
	// Limits are the limits the containers are made with (the agent's
	// job limits; Disk is not the Docker executor's). A job with other
	// limits, binds or a read-only root does not take one.
	Limits executor.Limits
}

// warmPools are the executor's pools, one per image, in one
// warmpool.Pool (one container made at a time).
type warmPools struct {
	e     *Executor
	specs map[string]Warm // by image
	pool  *warmpool.Pool[*container]
}

// newWarmPools starts filling the pools of specs; nil when there are none
// (a nil *warmPools has no containers and takes none).
func newWarmPools(e *Executor, specs []Warm, m *warmpool.Metrics) (*warmPools, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	w := &warmPools{e: e, specs: map[string]Warm{}}
	var keys []warmpool.Key
	for _, s := range specs {
		switch {
		case s.Image == "" || s.Slots <= 0:
			return nil, fmt.Errorf("warm pool %q of %d: want an image and at least one slot", s.Image, s.Slots)
		case s.Limits.Validate() != nil:
			return nil, fmt.Errorf("warm pool %s: %w", s.Image, s.Limits.Validate())
		}
		if _, dup := w.specs[s.Image]; dup {
			return nil, fmt.Errorf("warm pool %s: given twice", s.Image)
		}
		s.Limits.Disk = 0
		w.specs[s.Image] = s
		for slot := range s.Slots {
			keys = append(keys, warmpool.Key{Pool: poolName(s.Image), Slot: slot})
		}
	}
	w.pool = warmpool.New(keys, warmpool.Funcs[*container]{
		Make:    w.make,
		Alive:   e.alive,
		Destroy: func(c *container) { e.destroy(context.Background(), c, e.log) },
	}, m, e.log)
	return w, nil
}

func poolName(image string) string { return "docker:" + image }

// make makes k's container and checks its init waits.
func (w *warmPools) make(ctx context.Context, k warmpool.Key) (*container, error) {
	s := w.specs[k.Pool[len("docker:"):]]
	uid, gid := w.e.Identity(k.Slot)
	c, err := w.e.makeContainer(ctx, containerParams{
		name: "warm-" + strconv.Itoa(k.Slot), image: s.Image, limits: s.Limits, uid: uid, gid: gid, netFiles: true,
		labels: map[string]string{labelWarm: strconv.Itoa(k.Slot)},
	})
	if err != nil {
		return nil, err
	}
	c.commandW, err = execinit.AwaitReader(ctx, c.command, initWait, nil)
	if err == nil {
		err = w.e.alive(ctx, c)
	}
	if err != nil {
		w.e.destroy(context.WithoutCancel(ctx), c, w.e.log)
		return nil, fmt.Errorf("warm container %s: %w", c.short(), err)
	}
	return c, nil
}

// take hands spec a ready container made for it, or nil: the job then
// makes its own. A taken container is replaced.
func (w *warmPools) take(ctx context.Context, spec executor.Spec) *container {
	if w == nil {
		return nil
	}
	s, ok := w.specs[spec.Container.Image]
	if !ok {
		return nil
	}
	limits := spec.Limits
	limits.Disk = 0
	k := warmpool.Key{Pool: poolName(s.Image), Slot: spec.Slot}
	if spec.Container.ReadOnlyRoot || len(spec.Binds) > 0 || limits != s.Limits || !w.pool.Has(k) {
		w.pool.Miss(k.Pool)
		return nil
	}
	c, _ := w.pool.Take(ctx, k)
	return c
}

func (w *warmPools) waitFull(ctx context.Context) error {
	if w == nil {
		return nil
	}
	return w.pool.WaitFull(ctx)
}

func (w *warmPools) close() {
	if w != nil {
		w.pool.Close()
	}
}
