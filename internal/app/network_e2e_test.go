package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/executor/docker/dockertest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// networkScript runs in the job, in bash: /dev/tcp goes through the
// sandbox's resolver (glibc, /etc/resolv.conf) and its nftables table.
const networkScript = `
get() { # host port path label
	if exec 3<>"/dev/tcp/$1/$2"; then
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
		resp=$(cat <&3 | tr -d '\r')
		echo "$4: $(printf '%s\n' "$resp" | head -n1) $(printf '%s\n' "$resp" | tail -n1)"
		exec 3<&-
	else
		echo "$4: refused"
	fi
}
echo "env: $NIMBUS_CACHE_URL $ACTIONS_RESULTS_URL"
get allowed.test 80 / allowed
get 169.254.169.254 80 /latest/meta-data/ metadata
get other.test 80 / denied-name
get 198.51.100.8 80 / raw-ip
get nimbus.internal 80 /api/v1/jobs api-through-platform
body='cached through the platform address'
sha=$(printf %s "$body" | sha256sum | cut -d' ' -f1)
exec 3<>/dev/tcp/nimbus.internal/80
printf 'PUT /cache/cas/%s HTTP/1.0\r\nHost: nimbus.internal\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s' \
	"$sha" "$NIMBUS_CACHE_TOKEN" "${#body}" "$body" >&3
echo "cache-put: $(head -n1 <&3 | tr -d '\r')"
exec 3<&-
`

// A job submitted through the API runs in its own network under the
// control plane's egress rules: the allowed name works, the metadata
// address and unlisted names and addresses do not, the platform's cache
// is reachable at nimbus.internal with the job's token (and nothing else
// of the control plane is), and the job's egress report is kept.
func TestE2EJobNetwork(t *testing.T) {
	w := netpolicytest.New(t)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.EgressMode = "allow-list"
		c.EgressAllow = []string{"allowed.test"}
	})
	h.StartAgent(t, "net", func(c *app.AgentConfig) {
		c.SandboxNetwork = true
		c.SandboxDNS = []string{w.DNS}
	})
	id := submit(t, h, "bash", "-c", networkScript)
	j := waitJob(t, h, id, time.Minute, finished)
	out := logs(t, h, id)
	if j.State != "succeeded" {
		t.Fatalf("job %s: %s\n%s", j.State, j.Reason, out)
	}
	want := map[string]string{
		"env":                  "grpc://nimbus.internal:9092 http://nimbus.internal/actions-cache/",
		"allowed":              "HTTP/1.0 200 OK hello from 198.51.100.7",
		"metadata":             "refused",
		"denied-name":          "refused",
		"raw-ip":               "refused",
		"api-through-platform": "HTTP/1.0 404 Not Found",
		"cache-put":            "HTTP/1.0 20",
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			lines[k] = v
		}
	}
	for k, v := range want {
		if !strings.HasPrefix(lines[k], v) {
			t.Errorf("%s: %q, want %q…\njob output:\n%s", k, lines[k], v, out)
		}
	}
	// The blob the job wrote is in the org's cache.
	body := "cached through the platform address"
	sum := sha256.Sum256([]byte(body))
	req, _ := http.NewRequest("GET", h.URL+"/cache/cas/"+hex.EncodeToString(sum[:]), nil)
	req.Header.Set("Authorization", "Bearer "+h.OwnerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != body {
		t.Errorf("cache GET: %d %q", resp.StatusCode, got)
	}
	// The job shows its policy and what it did.
	if j.Egress == nil || j.Egress.Policy.Mode != "allow-list" || j.Egress.Report == nil {
		t.Fatalf("job egress: %+v", j.Egress)
	}
	r := j.Egress.Report
	if !hasEgressName(r.Names, "allowed.test", apiv1.VerdictAllowed) || !hasEgressName(r.Names, "other.test", apiv1.VerdictDenied) {
		t.Errorf("report names: %+v", r.Names)
	}
	if !hasEgressConn(r.Refused, "169.254.169.254", 80) || !hasEgressConn(r.Allowed, "198.51.100.7", 80) {
		t.Errorf("report connections: allowed %+v refused %+v", r.Allowed, r.Refused)
	}
	// The policy is in the audit log.
	var audit apiv1.AuditList
	if _, err := h.Owner().Do(context.Background(), "GET", "/api/v1/audit?limit=100", nil, &audit); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range audit.Entries {
		if e.Action == "job.egress_policy" && e.Target == id && e.Detail["mode"] == "allow-list" && e.Detail["allow"] == "allowed.test" {
			found = true
		}
	}
	if !found {
		t.Errorf("no job.egress_policy audit entry for %s", id)
	}
}

func hasEgressName(ns []apiv1.EgressName, name, verdict string) bool {
	for _, n := range ns {
		if n.Name == name && n.Verdict == verdict {
			return true
		}
	}
	return false
}

func hasEgressConn(cs []apiv1.EgressConn, addr string, port uint16) bool {
	for _, c := range cs {
		if c.Addr == addr && c.Port == port {
			return true
		}
	}
	return false
}

// interceptRunner stands in for the Actions runner running a step of an
// unmodified workflow that uses actions/cache: the runner hands the step
// GitHub's cache service URL and GitHub's runtime token (whatever the
// environment said), and the step saves, then restores, a directory with
// the real @actions/cache package.
const interceptRunner = `#!/bin/sh
set -e
cd "$HOME"
mkdir -p data && echo "cached by an unmodified workflow" > data/file.txt
export ACTIONS_RESULTS_URL=https://results-receiver.actions.githubusercontent.com/
export ACTIONS_CACHE_URL=https://artifactcache.actions.githubusercontent.com/AbCdEf123456/
export ACTIONS_RUNTIME_TOKEN=github-runtime-token-not-nimbus
export ACTIONS_CACHE_SERVICE_V2=true
export RUNNER_TEMP="$HOME/_temp" GITHUB_WORKSPACE="$HOME" # as the runner sets them
mkdir -p "$RUNNER_TEMP"
node /runner/client/drive.js save data e2e-intercept-key
rm -rf data
node /runner/client/drive.js restore data e2e-intercept-key
echo "restored: $(cat data/file.txt)"
`

// An unmodified workflow's actions/cache, in a GitHub job, uses Nimbus's
// cache: the job's sandbox answers GitHub's cache hosts itself. Also in a
// GitHub job with the docker label that takes a warm sandbox (its runner
// directory mounted in, its certificate files written at the lease).
func TestE2EUnmodifiedActionsCacheUsesNimbus(t *testing.T) {
	needSandbox(t)
	t.Run("cold", func(t *testing.T) { unmodifiedActionsCache(t, false) })
	t.Run("docker-warm", func(t *testing.T) {
		for _, p := range []string{"/usr/bin/podman", "/usr/bin/crun", "/usr/bin/slirp4netns", "/usr/bin/docker"} {
			if _, err := os.Stat(p); err != nil {
				testenv.Missing(t, "jobs' Docker daemons need %s (scripts/test-deps.sh installs it)", p)
			}
		}
		unmodifiedActionsCache(t, true)
	})
}

func unmodifiedActionsCache(t *testing.T, dockerWarm bool) {
	clientDir := filepath.Join("..", "cache", "actionscache", "testdata", "client")
	if _, err := os.Stat(filepath.Join(clientDir, "node_modules", "@actions", "cache")); err != nil {
		testenv.Missing(t, "@actions/cache is not installed: npm ci --prefix internal/cache/actionscache/testdata/client")
	}
	testenv.NeedCommand(t, "node", "apt-get install nodejs")
	ctx := context.Background()
	gh, keyFile := githubEmulator(t)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.GitHubAppID, c.GitHubAppKeyFile, c.GitHubAPIURL = 777, keyFile, gh.URL
		if dockerWarm {
			c.PoolLabels = append(c.PoolLabels, "docker")
		}
	})
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs/"+h.OrgID+"/github", apiv1.CreateOrg{GitHubLogin: "octo-org", GitHubID: 6811672}, nil); err != nil {
		t.Fatal(err)
	}
	// The run is a push to main of the org's own repository: a trusted
	// source, whose jobs may write the cache.
	gh.AddWorkflowRun(githubtest.WorkflowRun{ID: 10741946, Repo: "octo-org/hello-world", RepoID: 186853002, HeadBranch: "main"})
	runnerDir := apptest.SharedDir(t, "runner")
	script := interceptRunner
	if dockerWarm {
		script += "/usr/bin/docker info --format '{{.ServerVersion}}' >/dev/null && echo daemon-answers\n"
	}
	os.WriteFile(filepath.Join(runnerDir, "run.sh"), []byte(script), 0o755)
	if out, err := exec.Command("cp", "-a", clientDir, filepath.Join(runnerDir, "client")).CombinedOutput(); err != nil {
		t.Fatalf("copy the client: %v\n%s", err, out)
	}
	labels := []string{"self-hosted", "nimbus"}
	reg := prometheus.NewRegistry()
	h.StartAgent(t, "gh-agent", func(c *app.AgentConfig) {
		c.RunnerDir = runnerDir
		c.SandboxNetwork, c.InterceptActionsCache = true, true
		c.SandboxDNS = []string{"127.0.0.1:53"}
		if dockerWarm {
			c.Labels, c.DockerLabel = append(c.Labels, "docker"), "docker"
			c.JoinToken = h.JoinToken(c.Labels...)
			c.DockerDaemonWarm, c.DockerInit, c.Metrics = 1, warmInit(t), reg
		}
	})
	if dockerWarm {
		labels = append(labels, "docker")
		waitWarmPool(t, reg, "bwrap:docker")
	}
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 4242, Labels: labels})
	resp, err := githubtest.Deliver(ctx, nil, h.URL+"/webhooks/github", []byte(h.WebhookSecret), "workflow_job", "icpt-1", body)
	if err != nil {
		t.Fatal(err)
	}
	var res apiv1.WebhookResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if res.Outcome != "created" {
		t.Fatalf("webhook: %d %+v", resp.StatusCode, res)
	}
	j := waitJob(t, h, res.JobID, 2*time.Minute, finished)
	out := logs(t, h, j.ID)
	if j.State != "succeeded" || !strings.Contains(out, "restored: cached by an unmodified workflow") {
		t.Fatalf("job %s (%s); output:\n%s", j.State, j.Reason, out)
	}
	// The cache's traffic reached Nimbus, not GitHub: the job's resolver
	// answered the cache host itself.
	if r := j.Egress; r == nil || r.Report == nil || !hasEgressName(r.Report.Names, "results-receiver.actions.githubusercontent.com", apiv1.VerdictAllowed) {
		t.Errorf("egress: %+v", j.Egress)
	}
	if dockerWarm {
		if !strings.Contains(out, "daemon-answers") {
			t.Errorf("no daemon in the job:\n%s", out)
		}
		if hit := gathered(t, reg, "nimbus_warm_pool_takes_total", map[string]string{"pool": "bwrap:docker", "result": "hit"}); hit != 1 {
			t.Errorf("warm pool hits = %v, want 1", hit)
		}
	}
}

// warmInit is a copy of `nimbus container-init` (the test binary is not
// one) that sandbox uids can read.
func warmInit(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile(dockertest.BuildStatic(t, "github.com/nimbus-build/nimbus/internal/executor/docker/testinit"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/var/tmp", "nimbus-init-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "init")
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitWarmPool waits for the agent's warm pool to hold a ready sandbox.
func waitWarmPool(t *testing.T, reg *prometheus.Registry, pool string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for gathered(t, reg, "nimbus_warm_pool_ready", map[string]string{"pool": pool}) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the warm pool %s never filled", pool)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A job with a container image runs in a container through the agent's
// Docker executor, as the job's uid, under its egress policy.
func TestE2EContainerJob(t *testing.T) {
	needSandbox(t)
	d := dockertest.Start(t)
	img := d.Busybox(t)
	init := dockertest.BuildStatic(t, "github.com/nimbus-build/nimbus/internal/executor/docker/testinit")
	h := apptest.Start(t, "sqlite")
	reg := prometheus.NewRegistry()
	h.StartAgent(t, "docker-agent", func(c *app.AgentConfig) {
		c.Labels = append(c.Labels, apiv1.ContainerLabel)
		c.JoinToken = h.JoinToken(c.Labels...)
		c.DockerSocket, c.DockerInit = d.Socket, init
		c.SandboxNetwork = true
		c.SandboxDNS = []string{"127.0.0.1:53"}
		c.DockerWarm = []string{img + "=1"}
		c.Metrics = reg
	})
	var j apiv1.Job
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/jobs", apiv1.SubmitJob{
		Argv: []string{"sh", "-c", "echo in a container; id -u; cat /etc/resolv.conf | grep -c nameserver; ls /bin/busybox"}, TimeoutSeconds: 120,
		Container: &apiv1.Container{Image: img, ReadOnlyRoot: true}}, &j); err != nil {
		t.Fatal(err)
	}
	if j.Container == nil || j.Container.Image != img || !slices.Contains(j.Labels, apiv1.ContainerLabel) {
		t.Fatalf("submitted job: %+v", j)
	}
	j = waitJob(t, h, j.ID, 2*time.Minute, finished)
	out := logs(t, h, j.ID)
	if j.State != "succeeded" || !strings.Contains(out, "in a container\n") || !strings.Contains(out, "/bin/busybox") {
		t.Fatalf("job %s (%s):\n%s", j.State, j.Reason, out)
	}
	if strings.Contains(out, "\n0\n") {
		t.Errorf("the container ran as root:\n%s", out)
	}
	if j.Egress == nil || j.Egress.Report == nil || j.Egress.Policy.Mode != "offline" {
		t.Errorf("egress: %+v", j.Egress)
	}

	// The agent keeps one container of the image warm (--docker-warm);
	// the read-only job above could not take it, the next one does.
	pool := map[string]string{"pool": "docker:" + img}
	deadline := time.Now().Add(time.Minute)
	for gathered(t, reg, "nimbus_warm_pool_ready", pool) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the warm pool never filled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/jobs", apiv1.SubmitJob{
		Argv: []string{"sh", "-c", "echo warm; id -u; grep -c nameserver /etc/resolv.conf"}, TimeoutSeconds: 120,
		Container: &apiv1.Container{Image: img}}, &j); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, h, j.ID, 2*time.Minute, finished)
	out = logs(t, h, j.ID)
	if j.State != "succeeded" || !strings.Contains(out, "warm\n") || strings.Contains(out, "\n0\n") {
		t.Fatalf("warm job %s (%s):\n%s", j.State, j.Reason, out)
	}
	hit := map[string]string{"pool": "docker:" + img, "result": "hit"}
	miss := map[string]string{"pool": "docker:" + img, "result": "miss"}
	if h, m := gathered(t, reg, "nimbus_warm_pool_takes_total", hit), gathered(t, reg, "nimbus_warm_pool_takes_total", miss); h != 1 || m != 1 {
		t.Fatalf("warm pool hits %v misses %v, want 1 and 1", h, m)
	}
}

// gathered is the value of reg's sample of a counter or gauge with labels.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					n++
				}
			}
			if n != len(labels) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// A job with the docker label, through the control plane: its agent gives
// it a Docker daemon of its own, in its sandbox and network.
func TestE2EDockerDaemonJob(t *testing.T) {
	needSandbox(t)
	for _, p := range []string{"/usr/bin/podman", "/usr/bin/crun", "/usr/bin/slirp4netns", "/usr/bin/docker", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "jobs' Docker daemons need %s (scripts/test-deps.sh installs it)", p)
		}
	}
	// The agent keeps a sandbox with its daemon warm for slot 0.
	init := warmInit(t)
	reg := prometheus.NewRegistry()
	h := apptest.Start(t, "sqlite")
	h.StartAgent(t, "docker-daemon-agent", func(c *app.AgentConfig) {
		c.Labels, c.DockerLabel = append(c.Labels, "docker"), "docker"
		c.JoinToken = h.JoinToken(c.Labels...)
		c.SandboxNetwork = true
		c.SandboxDNS = []string{"127.0.0.1:53"}
		c.DockerDaemonWarm, c.DockerInit, c.Metrics = 1, init, reg
	})
	waitWarmPool(t, reg, "bwrap:docker")
	var j apiv1.Job
	script := `mkdir ctx && cp /usr/bin/busybox ctx/ && printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' > ctx/Dockerfile
/usr/bin/docker build -q -t app ctx >/dev/null && /usr/bin/docker run --rm app sh -c 'echo "in a container of the job: $(id -u)"'
echo "DOCKER_HOST=$DOCKER_HOST"`
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/jobs", apiv1.SubmitJob{
		Argv: []string{"sh", "-c", script}, Labels: []string{"linux", "docker"}, TimeoutSeconds: 300}, &j); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, h, j.ID, 3*time.Minute, finished)
	out := logs(t, h, j.ID)
	if j.State != "succeeded" || !strings.Contains(out, "in a container of the job: 0\n") || !strings.Contains(out, "DOCKER_HOST=unix:///run/docker.sock\n") {
		t.Fatalf("job %s (%s):\n%s", j.State, j.Reason, out)
	}
	if hit := gathered(t, reg, "nimbus_warm_pool_takes_total", map[string]string{"pool": "bwrap:docker", "result": "hit"}); hit != 1 {
		t.Fatalf("warm pool hits = %v, want 1 (the job made its own sandbox)", hit)
	}
	if j.Egress == nil || j.Egress.Report == nil {
		t.Errorf("no egress report for a job in a warm sandbox: %+v", j.Egress)
	}
}

// A job's Docker daemon pulls through the platform's registry cache: its
// mirror for docker.io is nimbus.internal, with the job's credential; the
// job's network is offline, so nothing else could have served the image.
func TestE2EDockerDaemonPullsThroughTheRegistryCache(t *testing.T) {
	needSandbox(t)
	for _, p := range []string{"/usr/bin/podman", "/usr/bin/crun", "/usr/bin/docker"} {
		if _, err := os.Stat(p); err != nil {
			testenv.Missing(t, "jobs' Docker daemons need %s (scripts/test-deps.sh installs it)", p)
		}
	}
	dist := registrytest.StartDistribution(t, registrytest.DistributionOptions{})
	front := registrytest.StartFront(t, dist)
	img := registrytest.RandomImage(t, 32<<10, 2)
	registrytest.Push(t, front.Host+"/library/app:v1", img, dist.Transport())
	want := registrytest.Digest(t, img)

	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.RegistryUpstreams = []string{"docker.io=" + front.URL} })
	h.StartAgent(t, "docker-pull-agent", func(c *app.AgentConfig) {
		c.Labels, c.DockerLabel = append(c.Labels, "docker"), "docker"
		c.JoinToken = h.JoinToken(c.Labels...)
		c.SandboxNetwork = true
		c.SandboxDNS = []string{"127.0.0.1:53"}
	})
	var j apiv1.Job
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/jobs", apiv1.SubmitJob{
		Argv:   []string{"sh", "-c", `/usr/bin/docker pull -q app:v1 && echo "digest: $(podman image inspect --format '{{.Digest}}' docker.io/library/app:v1)"`},
		Labels: []string{"linux", "docker"}, TimeoutSeconds: 300}, &j); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, h, j.ID, 3*time.Minute, finished)
	out := logs(t, h, j.ID)
	if j.State != "succeeded" || !strings.Contains(out, "digest: "+want+"\n") {
		t.Fatalf("job %s (%s), want digest %s:\n%s", j.State, j.Reason, want, out)
	}
	if front.BlobGets() == 0 {
		t.Errorf("the upstream served no blob")
	}
}
