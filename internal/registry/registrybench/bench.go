// Package registrybench is `nimbus bench registry`: the registry cache
// against distribution's pull-through proxy (Debian's docker-registry
// with proxy.remoteurl), both in front of the same origin registry on the
// same machine, pulled by skopeo. It prints a table with ratios.
package registrybench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// Options configure a run.
type Options struct {
	// Size is the image's size in bytes, in Layers layers.
	Size   int64
	Layers int
	// Concurrency is the number of simultaneous cold pulls.
	Concurrency int
	// HeadWorkers send manifest HEADs for HeadDuration.
	HeadWorkers  int
	HeadDuration time.Duration
	// WorkDir holds everything (default: a new temporary directory).
	WorkDir string
	Keep    bool
	// DockerRegistry and Skopeo are the binaries (default: from PATH).
	DockerRegistry, Skopeo string
	Log                    io.Writer
}

// Main is `nimbus bench registry`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o Options
	fs := flag.NewFlagSet("nimbus bench registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.Int64("size-mib", 200, "image size in MiB")
	fs.IntVar(&o.Layers, "layers", 4, "layers of the image")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "simultaneous cold pulls of the same image")
	fs.IntVar(&o.HeadWorkers, "head-workers", 16, "concurrent manifest HEAD senders")
	fs.DurationVar(&o.HeadDuration, "head-duration", 3*time.Second, "how long manifest HEADs are sent")
	fs.StringVar(&o.WorkDir, "workdir", "", "directory for the registries' storage and the pulled images (default: a new temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus bench registry [flags]

Compares Nimbus's registry cache with distribution's pull-through proxy
(docker-registry with proxy.remoteurl), both in front of one origin
docker-registry on this machine, pulled by skopeo (to a dir:): a cold pull,
a warm pull, %s simultaneous cold pulls (and the bytes each fetched from
the origin), and manifest HEADs per second. Nimbus runs as `+"`nimbus up`"+` starts
its server (SQLite, durable cache writes), with its owner token.
Needs docker-registry and skopeo (apt-get install docker-registry skopeo).

Flags:
`, "--concurrency")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Size = *size << 20
	o.Log = stderr
	rows, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus bench registry: %v\n", err)
		return 1
	}
	Print(stdout, o, rows)
	return 0
}

// Row is one line of the table.
type Row struct {
	Name        string
	Nimbus      float64 // the unit's value
	Distrib     float64
	Unit        string // "s", "MB/s", "copies", "/s"
	HigherWins  bool
	Goal        string
	NimbusNote  string
	DistribNote string
}

// target is a registry under measurement.
type target struct {
	name  string
	host  string // host:port
	repo  string // repository path on it
	creds string // skopeo --src-creds, "" for none
	token string // bearer token for HEADs, "" for none
	stop  func()
}

// Run measures and returns the rows.
func Run(ctx context.Context, o Options) ([]Row, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	var err error
	if o.DockerRegistry == "" {
		if o.DockerRegistry, err = exec.LookPath("docker-registry"); err != nil {
			return nil, fmt.Errorf("docker-registry not found (apt-get install docker-registry)")
		}
	}
	if o.Skopeo == "" {
		if o.Skopeo, err = exec.LookPath("skopeo"); err != nil {
			return nil, fmt.Errorf("skopeo not found (apt-get install skopeo)")
		}
	}
	dir := o.WorkDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "nimbus-bench-registry-"); err != nil {
			return nil, err
		}
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{o: o, dir: dir, sk: registrytest.NewSkopeoAt(o.Skopeo, filepath.Join(dir, "skopeo"))}
	os.MkdirAll(filepath.Join(dir, "skopeo"), 0o700)
	origin, err := registrytest.LaunchDistribution(o.DockerRegistry, b.mkdir("origin"), registrytest.DistributionOptions{})
	if err != nil {
		return nil, err
	}
	defer origin.Stop()
	b.front = registrytest.NewFront(origin)
	defer b.front.Close()
	fmt.Fprintf(o.Log, "building and pushing a %d MiB image in %d layers to the origin\n", o.Size>>20, o.Layers)
	img, err := randomImage(o.Size, o.Layers)
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(b.front.Host+"/bench/big:1", name.Insecure)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(ref, img, remote.WithTransport(origin.Transport()), remote.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("push to the origin: %w", err)
	}
	if b.blobBytes, b.layers, err = blobBytes(img); err != nil {
		return nil, err
	}
	return b.measure(ctx)
}

type bench struct {
	o Options
	// blobBytes is the image's config and layers: one copy.
	blobBytes int64
	layers    []string // the layers' digests
	dir       string
	sk        *registrytest.Skopeo
	front     *registrytest.Front
	n         atomic.Int64
}

func (b *bench) mkdir(n string) string {
	p := filepath.Join(b.dir, n)
	os.MkdirAll(p, 0o700)
	return p
}

func (b *bench) measure(ctx context.Context) ([]Row, error) {
	type result struct {
		cold, warm, conc, raw time.Duration
		coldBytes, concBytes  int64
		heads                 float64
		concFailed            int
	}
	var res [2]result
	for i, start := range []func(context.Context) (*target, error){b.startNimbus, b.startDistribution} {
		// Cold, then warm, on one fresh server.
		t, err := start(ctx)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(b.o.Log, "%s: cold pull\n", t.name)
		b.front.Reset()
		if res[i].cold, err = b.pull(ctx, t); err != nil {
			t.stop()
			return nil, err
		}
		res[i].coldBytes = b.front.BlobBytes()
		fmt.Fprintf(b.o.Log, "%s: warm pull\n", t.name)
		if res[i].warm, err = b.pull(ctx, t); err != nil {
			t.stop()
			return nil, err
		}
		fmt.Fprintf(b.o.Log, "%s: warm GETs of the layers\n", t.name)
		if res[i].raw, err = b.rawGets(ctx, t); err != nil {
			t.stop()
			return nil, err
		}
		fmt.Fprintf(b.o.Log, "%s: manifest HEADs\n", t.name)
		if res[i].heads, err = b.heads(ctx, t); err != nil {
			t.stop()
			return nil, err
		}
		t.stop()
		// Concurrent cold pulls, on another fresh server.
		if t, err = start(ctx); err != nil {
			return nil, err
		}
		fmt.Fprintf(b.o.Log, "%s: %d concurrent cold pulls\n", t.name, b.o.Concurrency)
		b.front.Reset()
		res[i].conc, res[i].concFailed, err = b.concurrent(ctx, t)
		res[i].concBytes = b.front.BlobBytes()
		t.stop()
		if err != nil {
			return nil, err
		}
	}
	mbps := func(d time.Duration) float64 { return float64(b.o.Size) / 1e6 / d.Seconds() }
	copies := func(n int64) float64 { return float64(n) / float64(b.blobBytes) }
	size := fmt.Sprintf("%d MiB", b.o.Size>>20)
	return []Row{
		{Name: "warm pull " + size, Nimbus: mbps(res[0].warm), Distrib: mbps(res[1].warm), Unit: "MB/s", HigherWins: true, Goal: "≥ 1.5×",
			NimbusNote: dur(res[0].warm), DistribNote: dur(res[1].warm)},
		{Name: "warm layer GETs (no skopeo)", Nimbus: mbps(res[0].raw), Distrib: mbps(res[1].raw), Unit: "MB/s", HigherWins: true, Goal: "—",
			NimbusNote: dur(res[0].raw), DistribNote: dur(res[1].raw)},
		{Name: "cold pull " + size, Nimbus: mbps(res[0].cold), Distrib: mbps(res[1].cold), Unit: "MB/s", HigherWins: true, Goal: "—",
			NimbusNote: dur(res[0].cold), DistribNote: dur(res[1].cold)},
		{Name: "cold pull: origin bytes", Nimbus: copies(res[0].coldBytes), Distrib: copies(res[1].coldBytes), Unit: "copies", Goal: "1"},
		{Name: fmt.Sprintf("%d concurrent cold pulls", b.o.Concurrency), Nimbus: float64(b.o.Concurrency) * mbps(res[0].conc),
			Distrib: float64(b.o.Concurrency) * mbps(res[1].conc), Unit: "MB/s", HigherWins: true, Goal: "—",
			NimbusNote: dur(res[0].conc), DistribNote: dur(res[1].conc) + failedNote(res[1].concFailed)},
		{Name: fmt.Sprintf("%d concurrent cold pulls: origin bytes", b.o.Concurrency), Nimbus: copies(res[0].concBytes), Distrib: copies(res[1].concBytes),
			Unit: "copies", Goal: "1"},
		{Name: "manifest HEAD", Nimbus: res[0].heads, Distrib: res[1].heads, Unit: "/s", HigherWins: true, Goal: "≥ 2×"},
	}, nil
}

func dur(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func failedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d failed, retried alone", n)
}

// pull copies the image to a fresh dir: and removes it.
func (b *bench) pull(ctx context.Context, t *target) (time.Duration, error) {
	out := filepath.Join(b.dir, fmt.Sprintf("pull-%d", b.n.Add(1)))
	defer os.RemoveAll(out)
	start := time.Now()
	if msg, err := b.sk.Copy(ctx, "docker://"+t.host+"/"+t.repo+":1", "dir:"+out, t.creds); err != nil {
		return 0, fmt.Errorf("%s: %w: %s", t.name, err, msg)
	}
	return time.Since(start), nil
}

// concurrent runs the simultaneous pulls and returns their wall time and
// how many failed. A failed pull of the comparison is retried alone
// afterwards (so its bytes are counted) and reported; one of Nimbus's
// fails the run.
func (b *bench) concurrent(ctx context.Context, t *target) (time.Duration, int, error) {
	var wg sync.WaitGroup
	errs := make(chan error, b.o.Concurrency)
	start := time.Now()
	for range b.o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.pull(ctx, t); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	failed := 0
	for err := range errs {
		if t.name == "nimbus" {
			return 0, 0, err
		}
		fmt.Fprintf(b.o.Log, "%s: a concurrent pull failed: %v\n", t.name, err)
		failed++
	}
	for range failed {
		if _, err := b.pull(ctx, t); err != nil {
			return 0, 0, err
		}
	}
	return d, failed, nil
}

// rawGets reads every layer once with a plain HTTP client (the
// server's side of a warm pull, without skopeo's hashing and writing);
// the best of three rounds.
func (b *bench) rawGets(ctx context.Context, t *target) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	buf := make([]byte, 1<<20)
	best := time.Duration(0)
	for range 3 {
		start := time.Now()
		for _, d := range b.layers {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.host+"/v2/"+t.repo+"/blobs/"+d, nil)
			if t.token != "" {
				req.Header.Set("Authorization", "Bearer "+t.token)
			}
			resp, err := client.Do(req)
			if err != nil {
				return 0, err
			}
			_, err = io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return 0, fmt.Errorf("%s: GET %s: %s %v", t.name, d, resp.Status, err)
			}
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// heads sends manifest HEADs by tag for the duration and returns the rate.
func (b *bench) heads(ctx context.Context, t *target) (float64, error) {
	url := "http://" + t.host + "/v2/" + t.repo + "/manifests/1"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.o.HeadWorkers}}
	defer client.CloseIdleConnections()
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(b.o.HeadDuration)
	var wg sync.WaitGroup
	start := time.Now()
	for range b.o.HeadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
				req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
				if t.token != "" {
					req.Header.Set("Authorization", "Bearer "+t.token)
				}
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HEAD %s: %s", url, resp.Status)
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, fmt.Errorf("%s: %w", t.name, err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// startNimbus starts the control plane as `nimbus up` configures it (its
// flags' defaults), on a new data dir, pulling through the origin.
func (b *bench) startNimbus(ctx context.Context) (*target, error) {
	dir := b.mkdir(fmt.Sprintf("nimbus-%d", b.n.Add(1)))
	var sc app.ServerConfig
	s := config.NewSet("nimbus up", io.Discard)
	sc.Register(s)
	args := []string{"--data-dir", dir, "--listen", "127.0.0.1:0", "--cache-grpc-listen", "", "--log-level", "warn",
		"--registry-upstreams", "origin=" + b.front.URL}
	if err := s.Parse(args, func(string) string { return "" }, "config"); err != nil {
		return nil, err
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	cp, err := app.OpenControlPlane(ctx, sc, slog.New(slog.NewTextHandler(b.o.Log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cp.Close()
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	if err := cp.SetURL(url); err != nil {
		cp.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- cp.Serve(sctx, ln) }()
	tok := cp.Bootstrap.AdminToken
	t := &target{name: "nimbus", host: ln.Addr().String(), repo: "origin/bench/big", creds: "nimbus:" + tok,
		stop: func() { cancel(); <-done; cp.Close(); os.RemoveAll(dir) }}
	if t.token, err = registryToken(ctx, url, tok, t.repo); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}

// registryToken gets a registry token for pulls of repo, as clients do.
func registryToken(ctx context.Context, base, tok, repo string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/token?service=nimbus&scope=repository:"+repo+":pull", nil)
	req.SetBasicAuth("nimbus", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	const key = `"token":"`
	i := strings.Index(string(b), key)
	if resp.StatusCode != http.StatusOK || i < 0 {
		return "", fmt.Errorf("registry token: %s %s", resp.Status, b)
	}
	rest := string(b)[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')], nil
}

// startDistribution starts docker-registry as a pull-through proxy of the
// origin, on TCP.
func (b *bench) startDistribution(ctx context.Context) (*target, error) {
	dir := b.mkdir(fmt.Sprintf("distribution-%d", b.n.Add(1)))
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d, err := registrytest.LaunchDistribution(b.o.DockerRegistry, dir, registrytest.DistributionOptions{ProxyRemoteURL: b.front.URL, Addr: addr})
	if err != nil {
		return nil, err
	}
	return &target{name: "distribution", host: addr, repo: "bench/big", stop: func() { d.Stop(); os.RemoveAll(dir) }}, nil
}

// freeAddr finds a free loopback port (docker-registry cannot report the
// port of :0).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// randomImage is an image of layers layers of random bytes, size in all
// (the layers are opaque blobs to the registries and to skopeo's dir:).
func randomImage(size int64, layers int) (v1.Image, error) {
	rng := rand.NewChaCha8([32]byte{1})
	img := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	per := size / int64(layers)
	for i := range layers {
		n := per
		if i == layers-1 {
			n = size - per*int64(layers-1)
		}
		b := make([]byte, n)
		rng.Read(b)
		var err error
		img, err = mutate.AppendLayers(img, static.NewLayer(b, types.DockerLayer))
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// blobBytes is the size of img's config and layers, and the layers'
// digests.
func blobBytes(img v1.Image) (int64, []string, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, nil, err
	}
	n := m.Config.Size
	var layers []string
	for _, l := range m.Layers {
		n += l.Size
		layers = append(layers, l.Digest.String())
	}
	return n, layers, nil
}

// Print writes the table.
func Print(w io.Writer, o Options, rows []Row) {
	fmt.Fprintf(w, "nimbus bench registry: %d MiB image in %d layers, skopeo copy to dir:, %d CPUs, %s\n\n",
		o.Size>>20, o.Layers, runtime.NumCPU(), time.Now().Format("2006-01-02"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tnimbus\tdistribution proxy\tratio\tgoal")
	for _, r := range rows {
		ratio := r.Nimbus / r.Distrib
		if !r.HigherWins && r.Unit == "copies" {
			ratio = r.Distrib / r.Nimbus
		}
		val := func(v float64, note string) string {
			s := fmt.Sprintf("%.1f %s", v, r.Unit)
			if r.Unit == "copies" {
				s = fmt.Sprintf("%.2f copies", v)
			}
			if r.Unit == "/s" {
				s = fmt.Sprintf("%.0f/s", v)
			}
			if note != "" {
				s += " (" + note + ")"
			}
			return s
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f×\t%s\n", r.Name, val(r.Nimbus, r.NimbusNote), val(r.Distrib, r.DistribNote), ratio, r.Goal)
	}
	tw.Flush()
}
