// Package jobdocker is a job's own Docker daemon: what the bubblewrap
// executor adds to the sandbox of a job that asks for Docker
// (executor.Spec.Docker).
//
// The daemon is Podman's Docker-compatible API service, rootless, as the
// job's uid, started by the job's first process (Prelude). Nothing of it
// runs outside the sandbox, so it has the job's user namespace, pid
// namespace, cgroup limits, network namespace (its egress policy
// included) and disk; when the job's last process ends, bubblewrap's pid
// namespace takes the daemon and every container with it, and the job's
// directories take its images.
//
// What the sandbox differs in: it may make user and mount namespaces (no
// --disable-userns, the namespace syscalls allowed by its syscall filter),
// because containers are namespaces; capabilities gained in a nested user
// namespace reach only namespaces the job itself made. Containers get
// network namespaces of their own through slirp4netns (a TUN device of the
// job's), whose sockets are the job's: their traffic takes the job's
// egress rules; --network host is the job's network, not the host's.
package jobdocker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
)

const (
	// Storage is where the daemon keeps images and containers: a
	// directory of the job's own on its disk.
	Storage = "/nimbus-docker"
	// Runtime is the daemon's XDG_RUNTIME_DIR, on a tmpfs.
	Runtime = "/run/nimbus-docker"
	// Socket is where DOCKER_HOST points, and /var/run/docker.sock
	// (the Actions runner mounts that path into a job's container).
	Socket = "/run/docker.sock"
	// ConfDir is bound read-only at /etc/containers.
	ConfDir = "/etc/containers"
	// startWait is the wait for the daemon's socket, in hundredths of
	// a second.
	startWait = 3000
)

// Prelude starts the daemon, waits for its socket and execs the
// job's command. The daemon is the job's child: it dies with the job's
// pid namespace.
var Prelude = preludeDirs + credentials + daemon + `exec "$@"`

// WarmPrelude is Prelude without the job's credentials, for a sandbox
// made before its job is known (a warm one): it starts the daemon and
// execs what waits for the job's command. The command it then gets starts
// with Credentials.
var WarmPrelude = preludeDirs + daemon + `exec "$@"`

// Credentials writes the job's credential for the registry cache (from
// $NIMBUS_CACHE_TOKEN) where the daemon and the Docker client read it,
// and execs the job's command: in a warm sandbox, the job's first step.
var Credentials = credentials + `exec "$@"`

var preludeDirs = fmt.Sprintf("mkdir -p -m 0700 %[1]s %[1]s/containers %[2]s/tmp || exit 125\n", Runtime, Storage)

var credentials = fmt.Sprintf(`if [ -n "$NIMBUS_CACHE_TOKEN" ]; then
	a=$(printf 'nimbus:%%s' "$NIMBUS_CACHE_TOKEN" | base64 -w0)
	printf '{"auths": {"%[2]s": {"auth": "%%s"}}}\n' "$a" >%[1]s/containers/auth.json || exit 125
	mkdir -p -m 0700 %[1]s/docker-config &&
	printf '{"auths": {%[3]s}}\n'%[4]s >%[1]s/docker-config/config.json || exit 125
fi
`, Runtime, platformRegistry, clientAuths(), strings.Repeat(` "$a"`, len(cachedRegistries)))

var daemon = fmt.Sprintf(`podman system service --time=0 unix://%[2]s >%[1]s/daemon.log 2>&1 &
n=0
until [ -S %[2]s ]; do
	n=$((n+1))
	if [ $n -gt %[3]d ] || ! kill -0 $! 2>/dev/null; then
		echo "nimbus: the job's Docker daemon did not start:" >&2
		cat %[1]s/daemon.log >&2
		exit 125
	fi
	sleep 0.01
done
`, Runtime, Socket, startWait)

// clientAuths is the "auths" of the Docker client's config.json (a
// printf format: each %s is the credential): the job's credential for every
// cached registry, under the names the client keys them by.
func clientAuths() string {
	var parts []string
	for _, r := range cachedRegistries {
		if r == "docker.io" {
			r = "https://index.docker.io/v1/"
		}
		parts = append(parts, fmt.Sprintf(`"%s": {"auth": "%%s"}`, r))
	}
	return strings.Join(parts, ", ")
}

// Env is the environment a job with a daemon gets, unless its Spec
// sets the same names.
var Env = map[string]string{
	"DOCKER_HOST":     "unix://" + Socket,
	"XDG_RUNTIME_DIR": Runtime,
	// Podman's own tools (podman, buildah) read the same configuration.
	"CONTAINERS_CONF": ConfDir + "/containers.conf",
	// The Docker client's own configuration: the job's credential for the
	// cached registries (written when the job has one).
	"DOCKER_CONFIG": Runtime + "/docker-config",
}

// confFiles is the configuration the daemon reads, the same for every
// job (paths are the sandbox's).
var confFiles = map[string]string{
	"containers.conf": `# Written by the Nimbus agent for jobs' Docker daemons.
[containers]
cgroups = "disabled"
keyring = false
log_driver = "k8s-file"

[network]
network_backend = "netavark"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
image_copy_tmp_dir = "` + Storage + `/tmp"
`,
	"storage.conf": `# Written by the Nimbus agent for jobs' Docker daemons.
[storage]
driver = "overlay"
runroot = "` + Runtime + `/storage"
graphroot = "` + Storage + `/storage"
rootless_storage_path = "` + Storage + `/storage"

[storage.options.overlay]
# The job has one uid: files of images owned by others become its own.
ignore_chown_errors = "true"
`,
	"registries.conf": `# Written by the Nimbus agent for jobs' Docker daemons.
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
` + registryMirrors(cachedRegistries...),
	"policy.json": `{"default": [{"type": "insecureAcceptAnything"}]}
`,
}

// platformRegistry is the registry cache as a job's network forwards it
// (netpolicy.PlatformName): plain HTTP inside the job's namespace.
const platformRegistry = "nimbus.internal"

// registryMirrors sends the pulls of each upstream's images to the
// platform's registry cache (HOST/<upstream>/<repository>, the cache's
// names), and only there: with no fallback to the upstream, the job's
// credential (which the Docker client sends for these registries) never
// leaves for a third party, and pulls are cached and audited whatever the
// job's egress policy.
func registryMirrors(upstreams ...string) string {
	var b strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", u, platformRegistry+"/"+u)
	}
	return b.String()
}

// cachedRegistries are the upstreams whose pulls go through the cache,
// and the names the Docker client keys their credentials by.
var cachedRegistries = []string{"docker.io", "ghcr.io", "quay.io"}

// WriteConf writes confFiles into dir (created, readable by
// every sandbox uid).
func WriteConf(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docker configuration: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("docker configuration: %w", err)
	}
	var errs []error
	for name, text := range confFiles {
		errs = append(errs, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docker configuration: %w", err)
	}
	return nil
}

// Layout is what the bubblewrap executor adds for a job's daemon.
type Layout struct {
	Storage string // host directory bound read-write at Storage
	Conf    string // host directory bound read-only at ConfDir
	// NetFiles is a host directory holding the joined network's files
	// (resolv.conf, hosts), bound from there: Podman's rootless network
	// namespace bind-mounts over /etc/resolv.conf, which it cannot do
	// over bwrap's --ro-bind-data of a deleted file. Root's, read-only to
	// the job.
	NetFiles string
	// Tun is a TUN device node of the job's own, bound at /dev/net/tun:
	// slirp4netns gives containers their own network namespaces (Docker's
	// default network, published ports) through it, inside the job's.
	// Empty when the agent is not root: containers then need --network
	// host (the job's network).
	Tun string
	// Warm: the sandbox is made before its job is known; it runs
	// WarmPrelude, and its job's command begins with Credentials.
	Warm bool
}

// WriteNetFiles writes a joined network's files into dir (created,
// readable by all, writable by root only), by their base names.
func WriteNetFiles(dir string, files []executor.File) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("network files: %w", err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Path)), f.Data, 0o644); err != nil {
			return fmt.Errorf("network files: %w", err)
		}
	}
	return nil
}

// MakeTun makes a TUN device node at path that uid:gid may open (the
// host's /dev/net/tun is root's). A TUN device reaches only the network
// namespaces its user may administer: the job's nested ones.
func MakeTun(path string, uid, gid int) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tun device: %w", err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200))); err != nil {
		return fmt.Errorf("tun device: %w", err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		os.Remove(path)
		return fmt.Errorf("tun device: %w", err)
	}
	return nil
}

// BwrapArgs are the bubblewrap options of a sandbox with a daemon.
func (d Layout) BwrapArgs() []string {
	o := []string{
		"--tmpfs", "/run",
		"--symlink", "../run", "/var/run",
		"--tmpfs", "/var/tmp",
		// Podman looks for the cgroup hierarchy; the job's own stays
		// hidden (containers are not given cgroups of their own).
		"--tmpfs", "/sys/fs/cgroup",
		"--bind", d.Storage, Storage,
		"--ro-bind", d.Conf, ConfDir,
	}
	if d.Tun != "" {
		o = append(o, "--dev-bind", d.Tun, "/dev/net/tun")
	}
	return o
}
