#!/usr/bin/env bash
# Installs the system packages Nimbus's tests run against and starts a
# throwaway PostgreSQL cluster for them. Prints the environment the tests
# need as `export` lines, so the caller can `eval "$(scripts/test-deps.sh)"`.
#
# Run as root it installs what is missing with apt-get; otherwise it says
# exactly what to install and fails.
set -euo pipefail

log() { echo "test-deps: $*" >&2; }

pkgs=()
command -v bwrap >/dev/null || pkgs+=(bubblewrap)
# Disk limits format a per-slot ext4 image.
[ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || pkgs+=(e2fsprogs)
command -v bazel >/dev/null || pkgs+=(bazel-bootstrap)
command -v nft >/dev/null || pkgs+=(nftables)
command -v ip >/dev/null || pkgs+=(iproute2)
command -v node >/dev/null || pkgs+=(nodejs npm)
# The dashboard's browser tests drive Debian's Chromium (playwright-core).
command -v chromium >/dev/null || pkgs+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || pkgs+=(postgresql)
# The registry cache's tests: a real upstream registry (distribution) and
# a real client.
command -v docker-registry >/dev/null || pkgs+=(docker-registry)
command -v skopeo >/dev/null || pkgs+=(skopeo)
# A real Docker daemon with registry-mirrors (started by the test on its
# own socket and directories, never the host's).
command -v dockerd >/dev/null || pkgs+=(docker.io)
# The Docker executor's tests import a busybox-static root filesystem as
# their image (no registry can be reached).
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || pkgs+=(busybox-static)

if ((${#pkgs[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages: ${pkgs[*]}; install them with: sudo apt-get install -y ${pkgs[*]}"
		exit 1
	fi
	log "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || log "apt-get update failed; trying the install anyway"
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
	# The package starts a registry service on :5000 where systemd runs;
	# the tests start their own, each on a socket of its own.
	if [[ " ${pkgs[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
		systemctl disable --now docker-registry >&2 || true
	fi
fi

# versitygw: a real S3-compatible server for the cache's S3 tier tests,
# installed through the Go module proxy into GOPATH/bin (where the tests
# look for it).
gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/versitygw" ] && ! command -v versitygw >/dev/null; then
	log "installing versitygw"
	GOBIN="$gobin" GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 >&2
fi

# A real OpenID Provider for the dashboard's sign-in tests: zitadel/oidc's
# example server (a certified OP library), run by the tests as a process.
opdir="$gobin/zitadel-oidc-v3.52.0"
if [ ! -x "$opdir/server" ]; then
	log "installing zitadel/oidc's example OpenID Provider"
	GOBIN="$opdir" GOFLAGS=-mod=mod go install github.com/zitadel/oidc/v3/example/server@v3.52.0 >&2
fi

# Node packages of the tests that drive real JavaScript clients (and the
# dashboard's browser tests: playwright-core, no browser download).
for d in internal/cache/actionscache/testdata/client internal/dashboard/testdata/browser; do
	if [ -f "$d/package-lock.json" ] && [ ! -d "$d/node_modules" ]; then
		log "npm ci in $d"
		npm ci --prefix "$d" --no-audit --no-fund --loglevel=error >&2
	fi
done

# PostgreSQL: our own cluster, so the tests never touch a real one.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pgdata=${NIMBUS_TEST_PGDATA:-/tmp/nimbus-test-pg}
pgport=${NIMBUS_TEST_PGPORT:-55432}
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
	# PostgreSQL refuses to run as root.
	id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/false postgres
	as_pg=(runuser -u postgres --)
fi
if ! "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
	rm -rf "$pgdata"
	mkdir -p "$pgdata"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$pgdata"
	log "starting PostgreSQL on 127.0.0.1:$pgport ($pgdata)"
	"${as_pg[@]}" "$pgbin/initdb" -D "$pgdata" -U nimbus --auth=trust -E UTF8 >/dev/null
	# fsync off: test databases are disposable; benchmarks use their own.
	"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -o \
		"-p $pgport -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=400" \
		start >/dev/null
fi
echo "export NIMBUS_TEST_POSTGRES='postgres://nimbus@127.0.0.1:$pgport/postgres?sslmode=disable'"
