#!/usr/bin/env bash
# Installs the system packages Nimbus's tests run against and starts a
# throwaway PostgreSQL cluster and ClickHouse server for them. Prints the environment the tests
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
# Log storage at scale: ClickHouse (Debian's 18.16), through its HTTP interface.
[ -x /usr/sbin/clickhouse-server ] || pkgs+=(clickhouse-server)
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
# Jobs' own Docker daemons: Podman's Docker API service, rootless, inside
# the job's sandbox (crun, slirp4netns for containers' networks, netavark
# and aardvark-dns for user networks and their names), driven in the tests
# by Debian's Docker and Compose clients.
command -v podman >/dev/null || pkgs+=(podman)
command -v crun >/dev/null || pkgs+=(crun)
command -v slirp4netns >/dev/null || pkgs+=(slirp4netns)
[ -x /usr/lib/podman/netavark ] || pkgs+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || pkgs+=(aardvark-dns)
command -v docker-compose >/dev/null || pkgs+=(docker-compose)

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

# ClickHouse: our own server (its own config, data dir and loopback port),
# never the system's. It is started in a new session with every inherited
# descriptor closed, so that it keeps neither the caller's pipes (this
# script's output is read by eval "$(…)") nor any lock it holds.
chdir=${NIMBUS_TEST_CHDIR:-/tmp/nimbus-test-ch}
chport=${NIMBUS_TEST_CHPORT:-58123}
if ! curl -fsS "http://127.0.0.1:$chport/ping" >/dev/null 2>&1; then
	log "starting ClickHouse on 127.0.0.1:$chport ($chdir)"
	rm -rf "$chdir"
	mkdir -p "$chdir/data" "$chdir/tmp" "$chdir/user_files" "$chdir/format_schemas"
	cat >"$chdir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$chdir/server.log</log><errorlog>$chdir/server.err.log</errorlog><size>10M</size><count>1</count></logger>
    <http_port>$chport</http_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>200</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>134217728</mark_cache_size>
    <path>$chdir/data/</path>
    <tmp_path>$chdir/tmp/</tmp_path>
    <user_files_path>$chdir/user_files/</user_files_path>
    <format_schema_path>$chdir/format_schemas/</format_schema_path>
    <users_config>$chdir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
	cat >"$chdir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
	as_ch=()
	if [ "$(id -u)" -eq 0 ] && id clickhouse >/dev/null 2>&1; then
		chown -R clickhouse: "$chdir"
		as_ch=(runuser -u clickhouse --)
	fi
	(
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] && eval "exec $fd>&-"
		done
		exec setsid "${as_ch[@]}" /usr/sbin/clickhouse-server --config-file="$chdir/config.xml" </dev/null >>"$chdir/stdout.log" 2>&1
	) &
	for _ in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$chport/ping" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "http://127.0.0.1:$chport/ping" >/dev/null || { log "ClickHouse did not start; see $chdir/server.err.log"; exit 1; }
fi
echo "export NIMBUS_TEST_CLICKHOUSE='http://127.0.0.1:$chport'"
