package cachebench

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// result is one row of the table.
type result struct {
	name     string
	ops      int64
	bytes    int64
	elapsed  time.Duration
	p50, p99 time.Duration
	// cpu is the server's CPU time over the measured phase (not the
	// setup), when the benchmark knows the server's process.
	cpu     time.Duration
	err     error
	skipped bool
}

type row struct {
	name string
	// setup prepares state and returns the operation; op returns the
	// payload bytes it moved.
	run func(ctx context.Context, cl client, o *options) result
}

func rowNames() []string {
	var names []string
	for _, r := range rows() {
		names = append(names, r.name)
	}
	return names
}

func rows() []row {
	return []row{
		{"cas-get-4k", runGet4k},
		{"cas-put-4k", runPut4k},
		{"put-existing-4k", runPutExisting},
		{"findmissing-1000", runFindMissing},
		{"batch-update-100x4k", runBatchUpdate},
		{"batch-read-100x4k", runBatchRead},
		{"get-64m", func(ctx context.Context, cl client, o *options) result { return runBig(ctx, cl, o, "get") }},
		{"put-64m", func(ctx context.Context, cl client, o *options) result { return runBig(ctx, cl, o, "put") }},
		{"bytestream-read-64m", func(ctx context.Context, cl client, o *options) result { return runBig(ctx, cl, o, "bytestream") }},
	}
}

func run(ctx context.Context, cl client, o *options, progress io.Writer) ([]result, error) {
	want := map[string]bool{}
	if o.rows != "" {
		for _, n := range strings.Split(o.rows, ",") {
			if !slices.Contains(rowNames(), n) {
				return nil, fmt.Errorf("--rows: unknown row %q", n)
			}
			want[n] = true
		}
	}
	var results []result
	for _, r := range rows() {
		if len(want) > 0 && !want[r.name] {
			continue
		}
		fmt.Fprintf(progress, "%s %s...\n", cl.protocol(), r.name)
		res := r.run(ctx, cl, o)
		res.name = r.name
		if res.err == errUnsupported {
			continue
		}
		results = append(results, res)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	return results, nil
}

// randomBlob returns size random bytes (unique per call). The bytes come
// from ChaCha8 seeded by crypto/rand: unique across runs, so a target never
// already holds them, and generated at several GB/s, where crypto/rand's
// ~0.1 GB/s here made the 64 MiB rows spend most of their time in setup.
func randomBlob(size int) blob {
	var seed [32]byte
	crand.Read(seed[:])
	b := make([]byte, size)
	mrand.NewChaCha8(seed).Read(b)
	return newBlob(b)
}

// measure runs op from conc workers until d has passed (or n ops in all if
// n > 0) and summarises the latencies.
func measure(ctx context.Context, conc int, d time.Duration, n int64, op func(ctx context.Context, i int64) (int64, error)) result {
	var (
		next    atomic.Int64
		total   atomic.Int64
		firstEr atomic.Pointer[error]
		wg      sync.WaitGroup
		lats    = make([][]time.Duration, conc)
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if n > 0 && i >= n || n == 0 && time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				b, err := op(ctx, i)
				lats[w] = append(lats[w], time.Since(t0))
				if err != nil {
					firstEr.CompareAndSwap(nil, &err)
					return
				}
				total.Add(b)
			}
		}()
	}
	wg.Wait()
	res := result{elapsed: time.Since(start), bytes: total.Load()}
	all := slices.Concat(lats...)
	res.ops = int64(len(all))
	slices.Sort(all)
	if len(all) > 0 {
		res.p50 = all[len(all)/2]
		res.p99 = all[min(len(all)-1, len(all)*99/100)]
	}
	if e := firstEr.Load(); e != nil {
		res.err = *e
	}
	return res
}

// seed uploads count random blobs of size with cl.
func seed(ctx context.Context, cl client, count, size int) ([]blob, error) {
	bs := make([]blob, count)
	for i := range bs {
		bs[i] = randomBlob(size)
	}
	r := measure(ctx, 16, 0, int64(count), func(ctx context.Context, i int64) (int64, error) {
		return 0, cl.put(ctx, bs[i])
	})
	return bs, r.err
}

func runGet4k(ctx context.Context, cl client, o *options) result {
	bs, err := seed(ctx, cl, 2000, 4096)
	if err != nil {
		return result{err: fmt.Errorf("seed: %w", err)}
	}
	c0 := o.serverCPU()
	r := measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		return cl.get(ctx, bs[i%int64(len(bs))])
	})
	r.cpu = o.serverCPU() - c0
	return r
}

func runPut4k(ctx context.Context, cl client, o *options) result {
	return measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		b := randomBlob(4096)
		return 4096, cl.put(ctx, b)
	})
}

func runPutExisting(ctx context.Context, cl client, o *options) result {
	b := randomBlob(4096)
	if err := cl.put(ctx, b); err != nil {
		return result{err: err}
	}
	return measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		return 4096, cl.put(ctx, b)
	})
}

func runFindMissing(ctx context.Context, cl client, o *options) result {
	if err := cl.findMissing(ctx, nil); err == errUnsupported {
		return result{err: err}
	}
	bs, err := seed(ctx, cl, 500, 4096)
	if err != nil {
		return result{err: fmt.Errorf("seed: %w", err)}
	}
	// Half present, half missing.
	for i := range 500 {
		var b [32]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		bs = append(bs, newBlob(b[:]))
	}
	return measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		return 0, cl.findMissing(ctx, bs)
	})
}

func runBatchUpdate(ctx context.Context, cl client, o *options) result {
	if err := cl.batchUpdate(ctx, nil); err == errUnsupported {
		return result{err: err}
	}
	return measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		bs := make([]blob, 100)
		for k := range bs {
			bs[k] = randomBlob(4096)
		}
		return 100 * 4096, cl.batchUpdate(ctx, bs)
	})
}

func runBatchRead(ctx context.Context, cl client, o *options) result {
	if _, err := cl.batchRead(ctx, nil); err == errUnsupported {
		return result{err: err}
	}
	bs, err := seed(ctx, cl, 1000, 4096)
	if err != nil {
		return result{err: fmt.Errorf("seed: %w", err)}
	}
	return measure(ctx, o.concurrency, o.duration, 0, func(ctx context.Context, i int64) (int64, error) {
		k := int(i*100) % len(bs)
		return cl.batchRead(ctx, bs[k:k+100])
	})
}

// runBig measures one large blob: "get" (HTTP GET), "bytestream" (gRPC
// ByteStream read) or "put" (a new blob each time).
func runBig(ctx context.Context, cl client, o *options, kind string) result {
	switch {
	case kind == "get" && cl.protocol() != "http", kind == "bytestream" && cl.protocol() != "grpc":
		return result{err: errUnsupported}
	}
	if kind == "put" {
		blobs := make([]blob, o.bigCount)
		for i := range blobs {
			blobs[i] = randomBlob(int(o.bigSize))
		}
		return measure(ctx, 1, 0, int64(o.bigCount), func(ctx context.Context, i int64) (int64, error) {
			return o.bigSize, cl.put(ctx, blobs[i])
		})
	}
	b := randomBlob(int(o.bigSize))
	if err := cl.put(ctx, b); err != nil {
		return result{err: fmt.Errorf("seed: %w", err)}
	}
	return measure(ctx, 1, 0, int64(o.bigCount), func(ctx context.Context, i int64) (int64, error) {
		return cl.get(ctx, b)
	})
}

func printTable(w io.Writer, target string, rs []result) {
	fmt.Fprintf(w, "\ntarget %s\n", target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\tops\tops/s\tMB/s\tp50\tp99\t")
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%d\terror: %v\t\t\t\t\n", r.name, r.ops, r.err)
			continue
		}
		secs := r.elapsed.Seconds()
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%s\t%s\t\n", r.name, r.ops, float64(r.ops)/secs, float64(r.bytes)/secs/1e6, fmtDur(r.p50), fmtDur(r.p99))
	}
	tw.Flush()
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
