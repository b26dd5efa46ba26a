package bwrap

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/docker/dockertest"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
)

// requireDocker skips (fails under CI=true) without what a job's Docker
// daemon and the tests' clients need.
func requireDocker(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, p := range []string{"/usr/bin/podman", "/usr/bin/crun", "/usr/bin/slirp4netns", "/usr/lib/podman/netavark",
		"/usr/lib/podman/aardvark-dns", "/usr/bin/docker", "/usr/bin/docker-compose", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			unavailable(t, fmt.Sprintf("jobs' Docker daemons need %s (scripts/test-deps.sh installs it)", p))
		}
	}
}

func withDocker(s *executor.Spec) { s.Docker = true }

// dockerfile builds a three-layer image from the host's busybox (no
// registry is reachable): /bin/busybox, its applets, a script.
const buildApp = `mkdir ctx && cp /usr/bin/busybox ctx/ && echo 'echo hello from the image' > ctx/hello.sh
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY hello.sh /hello.sh\nCMD ["/bin/sh", "/hello.sh"]\n' > ctx/Dockerfile
docker build -q -t app ctx >/dev/null || exit 1
`

// A job with Docker builds and runs an image, runs a service with a
// published port and reaches it, runs two containers on a network of its
// own that find each other by name, and brings up a Compose project: with
// Debian's unmodified docker and docker-compose clients.
func TestDockerDaemonWorkflows(t *testing.T) {
	requireDocker(t)
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `set -e
export PATH=/usr/bin:$PATH
`+buildApp+`
echo "run: $(docker run --rm app)"
mkdir www && echo served > www/index.html
docker run -d --name web -p 8080:8080 -v "$PWD/www:/www" app httpd -f -p 8080 -h /www >/dev/null
n=0; until body=$(busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null); do n=$((n+1)); [ $n -lt 200 ]; sleep 0.05; done
echo "published: $body"
docker network create jobnet >/dev/null
docker run -d --network jobnet --name db -v "$PWD/www:/www" app httpd -f -p 80 -h /www >/dev/null
echo "by name: $(docker run --rm --network jobnet app sh -c 'n=0; until wget -qO- http://db/; do n=$((n+1)); [ $n -lt 100 ] || exit 1; sleep 0.05; done')"
cat > docker-compose.yml <<'EOF'
version: "3"
services:
  api:
    image: app
    command: httpd -f -p 81 -h /www
    volumes: ["./www:/www"]
  client:
    image: app
    command: sh -c "n=0; until wget -qO- http://api:81/; do n=$$((n+1)); [ $$n -lt 100 ] || exit 1; sleep 0.05; done"
    depends_on: [api]
EOF
docker-compose up --abort-on-container-exit --exit-code-from client 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'client_1 *| served' | sed 's/ *|/:/'
docker-compose down >/dev/null 2>&1
`, withDocker)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d (%v):\n%s", res.ExitCode, res.Cause, out)
	}
	for _, want := range []string{"run: hello from the image", "published: served", "by name: served", "client_1: served"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// What people try from a job with Docker to get at the host: privileged
// containers, added capabilities, the root filesystem, the host's pids
// and network. Each is either refused or confined to the job's own
// namespaces: no host file, host process or host port is reached.
func TestDockerDaemonRedTeam(t *testing.T) {
	requireDocker(t)
	e := newExecutor(t)

	// A host file, a host process and a host port, each holding a token.
	token := newToken()
	secret := filepath.Join(traversableDir(t), "secret")
	if err := os.WriteFile(secret, []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sh", "-c", "sleep 1000 # "+token)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, token) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	mark := newToken()
	slot := newSlot(t)
	res, out := runScript(t, e, slot, `export PATH=/usr/bin:$PATH
`+buildApp+`
read_host='cat '$SECRET' /host'$SECRET' 2>&1; for p in /proc/[0-9]*; do tr "\0" " " <$p/cmdline; echo; done; printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 127.0.0.1 '$PORT' 2>&1'
try() { name=$1; shift; echo "== $name"; docker run --rm "$@" app sh -c "echo ran; $read_host; $EXTRA" 2>&1; }
EXTRA='mount -t tmpfs x /mnt && echo mounted-in-own-namespace'
try privileged --privileged
try cap-sys-admin --cap-add SYS_ADMIN --security-opt seccomp=unconfined
EXTRA='nsenter -t 1 -m -u -n -i cat '$SECRET' 2>&1'
try root-volume -v /:/host
try pid-host --pid host
try network-host --network host
try all-together --privileged --network host -v /:/host
# A container left running: it must not outlive the job.
docker run -d app sh -c "sleep 1000 # $MARK" >/dev/null && echo left-running
`, withDocker, func(s *executor.Spec) {
		s.Env = map[string]string{"SECRET": secret, "PORT": fmt.Sprint(port), "MARK": mark}
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d (%v):\n%s", res.ExitCode, res.Cause, out)
	}
	if strings.Contains(out, token) {
		t.Errorf("a container reached the host's file, process or port:\n%s", out)
	}
	// Refused (Podman refuses what a rootless engine cannot give) or run
	// and confined; these must have run, or the test proves nothing.
	attempts := map[string]string{}
	for _, sec := range strings.Split(out, "== ")[1:] {
		name, body, _ := strings.Cut(sec, "\n")
		attempts[name] = body
		t.Logf("%s: %s", name, strings.SplitN(body, "\n", 2)[0])
	}
	for _, name := range []string{"cap-sys-admin", "root-volume", "network-host"} {
		if !strings.HasPrefix(attempts[name], "ran\n") {
			t.Errorf("%s did not run:\n%s", name, attempts[name])
		}
	}
	if !strings.Contains(attempts["cap-sys-admin"], "mounted-in-own-namespace") {
		t.Errorf("SYS_ADMIN did not even mount in the container's own namespace:\n%s", attempts["cap-sys-admin"])
	}
	if len(attempts) != 6 || !strings.Contains(out, "left-running") {
		t.Errorf("not every attempt ran:\n%s", out)
	}
	if left := liveProcesses(t, sandboxUID(t, e, slot), mark); len(left) > 0 {
		t.Errorf("processes of the job's containers outlived it:\n%s", strings.Join(left, "\n"))
	}
	// The job's images, containers, device node and network files went
	// with it.
	if entries, err := os.ReadDir(e.opts.WorkRoot); err == nil {
		for _, ent := range entries {
			if ent.Name() != "docker-conf" {
				t.Errorf("left in the work root: %s", ent.Name())
			}
		}
	}
}

// Containers of a job's daemon obey the job's egress policy: on Docker's
// default network (slirp4netns inside the job's namespace) and on the
// job's own, the allowed name is reached and the attacks of
// TestNetworkRedTeam are refused.
func TestDockerDaemonEgress(t *testing.T) {
	requireDocker(t)
	w := netpolicytest.New(t)
	tool := netpolicytest.BuildNettool(t)
	m, err := netpolicy.NewManager(netpolicy.Config{Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t)
	job, err := m.Prepare(t.Context(), netpolicy.Spec{ID: "docker-egress", Policy: netpolicy.Policy{
		Mode: netpolicy.ModeAllowList, Allow: []string{"allowed.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	hostLn, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go acceptAll(hostLn)
	hostPort := hostLn.Addr().(*net.TCPAddr).Port
	ports := func(a netip.Addr, p int) string { return netip.AddrPortFrom(a, uint16(p)).String() }
	checks := []struct {
		label, cmd string
		allow      bool
	}{
		{"allowed", "get http://allowed.test/", true},
		{"metadata", "get http://169.254.169.254/latest/meta-data/", false},
		{"private", "get http://10.77.0.7/", false},
		{"rawip", "connect tcp " + ports(netpolicytest.Public2, 80), false},
		{"host-gw", "connect tcp " + ports(job.Gateway(), hostPort), false},
		{"host-world", "connect tcp " + ports(netip.MustParseAddr("198.51.100.1"), hostPort), false},
		{"dns-outside", "dns " + ports(netpolicytest.Public, 53) + " udp allowed.test A", false},
	}
	var probe strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&probe, "/nettool %s %s\n", c.label, c.cmd)
	}
	res, out := runScript(t, e, newSlot(t), `export PATH=/usr/bin:$PATH
mkdir ctx && cp /nettool/nettool /usr/bin/busybox ctx/ && printf 'FROM scratch\nCOPY nettool busybox /\n' > ctx/Dockerfile
docker build -q -t probe ctx >/dev/null || exit 1
for net in bridge host; do
	echo "== $net"
	docker run --rm --network $net probe /busybox sh -c "$PROBE" 2>&1
done
`, withDocker, func(s *executor.Spec) {
		s.Network = job
		s.Binds = []executor.Bind{{Source: tool, Target: "/nettool", ReadOnly: true}}
		s.Env = map[string]string{"PROBE": probe.String()}
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d (%v):\n%s", res.ExitCode, res.Cause, out)
	}
	sections := strings.Split(out, "== ")[1:]
	if len(sections) != 2 {
		t.Fatalf("output:\n%s", out)
	}
	for _, sec := range sections {
		name, body, _ := strings.Cut(sec, "\n")
		lines := map[string]string{}
		for _, l := range strings.Split(body, "\n") {
			if k, v, ok := strings.Cut(l, ": "); ok {
				lines[k] = v
			}
		}
		for _, c := range checks {
			got, ok := lines[c.label]
			switch {
			case !ok:
				t.Errorf("%s network, %s: no result in:\n%s", name, c.label, body)
			case c.allow && !strings.HasPrefix(got, "ok "):
				t.Errorf("%s network, %s (%s): %q, want ok", name, c.label, c.cmd, got)
			case !c.allow && !strings.HasPrefix(got, "err "):
				t.Errorf("%s network, %s (%s): %q, want it refused", name, c.label, c.cmd, got)
			}
		}
	}
}

// The calls the GitHub Actions runner makes for a job with `container:`
// and `services:` (its DockerCommandManager, as of runner 2.3xx): a
// labelled network, a job container kept alive by `tail -f /dev/null`
// with the workspace, externals and /var/run/docker.sock mounted, a
// service container with an alias and a published port, `docker exec` of
// a step script, and removal of everything at the end.
func TestDockerDaemonActionsRunnerCalls(t *testing.T) {
	requireDocker(t)
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `set -e
export PATH=/usr/bin:$PATH
`+buildApp+`
L=0a1b2c
N=github_network_5e8b1d
echo "api: $(docker version --format '{{.Server.APIVersion}}')"
docker network create --label $L $N >/dev/null
mkdir -p work/_temp work/repo/repo work/_github_home externals www && echo service-answer > www/index.html
sid=$(docker create --name svc_db --label $L --network $N --network-alias db -p 5432 -e GITHUB_ACTIONS=true -e CI=true -v "$PWD/www":"/www" app httpd -f -p 5432 -h /www)
docker start $sid >/dev/null
echo "port: $(docker port $sid | head -1 | grep -c 5432)"
id=$(docker create --name job_container --label $L --workdir /__w/repo/repo --network $N -e "HOME=/github/home" -e GITHUB_ACTIONS=true -e CI=true -v "/var/run/docker.sock":"/var/run/docker.sock" -v "$PWD/work":"/__w" -v "$PWD/externals":"/__e":ro -v "$PWD/work/_github_home":"/github/home" --entrypoint "tail" app "-f" "/dev/null")
docker start $id >/dev/null
echo "running: $(docker ps --all --filter id=$id --filter status=running --no-trunc --format '{{.ID}} {{.Status}}' | grep -c Up)"
echo "env: $(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $id | grep -c GITHUB_ACTIONS=true)"
printf '%s\n' 'echo "step in $(pwd) as $(id -u)"' 'test -S /var/run/docker.sock && echo "socket: yes"' \
	'n=0; until wget -qO- http://db:5432/; do n=$((n+1)); [ $n -lt 100 ] || exit 1; sleep 0.05; done' > work/_temp/step.sh
docker exec -i --workdir /__w/repo/repo -e GITHUB_ACTIONS=true $id sh -e /__w/_temp/step.sh
docker rm --force $id $sid >/dev/null
docker network rm $N >/dev/null
echo "left: $(docker ps -aq | wc -l) $(docker network ls -q --filter label=$L | wc -l)"
`, withDocker)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d (%v):\n%s", res.ExitCode, res.Cause, out)
	}
	for _, want := range []string{"port: 1", "running: 1", "env: 1", "step in /__w/repo/repo as 0", "socket: yes", "service-answer", "left: 0 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// warmInit is `nimbus container-init` for warm sandboxes, where the
// sandboxes' uids can read it.
func warmInit(t *testing.T) string {
	t.Helper()
	bin := dockertest.BuildStatic(t, "github.com/nimbus-build/nimbus/internal/executor/docker/testinit")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(traversableDir(t), "init")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A job with Docker takes a sandbox whose daemon was started before it:
// its network is built at the lease (the egress policy holds, containers
// get networks of their own through it), its environment and registry
// credential are its own, and the next job in the slot gets a new
// sandbox, with none of the first one's images or files. A job the pool
// was not made for (a bind) makes its own, its network built by the
// executor.
func TestDockerDaemonWarm(t *testing.T) {
	requireDocker(t)
	world := netpolicytest.New(t)
	m, err := netpolicy.NewManager(netpolicy.Config{Upstream: []string{world.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := warmpool.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	limits := executor.Limits{Memory: 2 << 30, Pids: 4096}
	e := newExecutor(t, func(o *Options) {
		o.WarmDocker, o.WarmLimits, o.Init, o.Metrics = 1, limits, warmInit(t), metrics
		o.WarmNetFiles, o.WarmBinds = netpolicy.FilePaths, []string{"/runner"}
	})
	// A runner directory of the job's, as the agent clones it.
	uid, gid, _ := e.Identity(0)
	runner := filepath.Join(traversableDir(t), "runner")
	if err := os.Mkdir(runner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runner, "run.sh"), []byte("echo the runner\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Lchown(runner, uid, gid)
	os.Lchown(filepath.Join(runner, "run.sh"), uid, gid)
	waitWarm := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if err := e.warm.WaitFull(ctx); err != nil {
			t.Fatalf("warm pool not full: %v", err)
		}
	}
	var reports []*netpolicy.Sandbox
	t.Cleanup(func() {
		for _, sb := range reports {
			sb.Close()
		}
	})
	withNetwork := func(s *executor.Spec) {
		s.Docker, s.Limits, s.Slot = true, limits, 0
		s.Env = map[string]string{"GREETING": "from the lease", "NIMBUS_CACHE_TOKEN": "job-token"}
		s.BuildNetwork = func(ctx context.Context, fd int) (executor.Network, error) {
			sb, err := m.Prepare(ctx, netpolicy.Spec{ID: "warm", NetnsFD: fd,
				Policy: netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: []string{"allowed.test"}}})
			if err == nil {
				reports = append(reports, sb)
			}
			return sb, err
		}
	}
	hits := func() float64 {
		return metrics.Takes(warmDockerPool, "hit")
	}
	waitWarm()
	res, out := runScript(t, e, 0, `export PATH=/usr/bin:$PATH
echo "greeting: $GREETING"
docker info --format '{{.ServerVersion}}' >/dev/null && echo daemon-answers
grep -q '"auth": "'$(printf nimbus:job-token | base64 -w0)'"' $XDG_RUNTIME_DIR/containers/auth.json && echo credential-written
busybox wget -q -O- http://allowed.test/; echo
busybox wget -q -T 3 -O- http://169.254.169.254/ >/dev/null 2>&1 || echo metadata-refused
`+buildApp+`
echo "run: $(docker run --rm app)"
echo left > /workspace/left`, withNetwork)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d (%v):\n%s", res.ExitCode, res.Cause, out)
	}
	for _, want := range []string{"greeting: from the lease", "daemon-answers", "credential-written", "hello from 198.51.100.7",
		"metadata-refused", "run: hello from the image"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := hits(); got != 1 {
		t.Fatalf("hits = %v, want 1", got)
	}

	// The second job binds its runner directory, as a GitHub job does:
	// the bind is mounted into the warm sandbox when it takes it.
	waitWarm()
	res, out = runScript(t, e, 0, `export PATH=/usr/bin:$PATH
echo "images: $(docker images -q | wc -l) containers: $(docker ps -aq | wc -l)"; ls -A /workspace; echo end
sh /runner/run.sh && echo written > /runner/state && test -s /etc/ssl/certs/ca-certificates.crt && echo system-bundle`, withNetwork, func(s *executor.Spec) {
		s.Binds = []executor.Bind{{Source: runner, Target: "/runner"}}
	})
	if res.ExitCode != 0 || !strings.Contains(out, "images: 0 containers: 0\nend\nthe runner\nsystem-bundle") {
		t.Fatalf("the second job (exit %d):\n%s", res.ExitCode, out)
	}
	if b, err := os.ReadFile(filepath.Join(runner, "state")); err != nil || string(b) != "written\n" {
		t.Fatalf("the job's write to its runner directory: %q %v", b, err)
	}
	if got := hits(); got != 2 {
		t.Fatalf("hits = %v, want 2", got)
	}

	// Not the pool's: a read-only bind. The executor builds its network
	// itself.
	res, out = runScript(t, e, 0, `export PATH=/usr/bin:$PATH
docker info --format '{{.ServerVersion}}' >/dev/null && echo daemon-answers; test -d /runner && echo bound
busybox wget -q -T 3 -O- http://169.254.169.254/ >/dev/null 2>&1 || echo metadata-refused`, withNetwork, func(s *executor.Spec) {
		s.Binds = []executor.Bind{{Source: traversableDir(t), Target: "/runner", ReadOnly: true}}
	})
	if res.ExitCode != 0 || !strings.Contains(out, "daemon-answers\nbound\nmetadata-refused") {
		t.Fatalf("cold job (exit %d):\n%s", res.ExitCode, out)
	}
	if got := metrics.Takes(warmDockerPool, "miss"); got != 1 {
		t.Fatalf("misses = %v, want 1", got)
	}
	if hits() != 2 {
		t.Fatal("the cold job took a warm sandbox")
	}

	// Close removes the ready sandbox: nothing of the slot's uid is left.
	waitWarm()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if left := liveProcesses(t, sandboxUID(t, e, 0), ""); len(left) > 0 {
		t.Fatalf("processes left after Close: %v", left)
	}
}
