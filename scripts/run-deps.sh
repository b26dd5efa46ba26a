#!/usr/bin/env bash
# What `make run` needs on the machine: bubblewrap for the job sandbox.
set -euo pipefail
if command -v bwrap >/dev/null; then
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	echo "make run: installing bubblewrap" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || true
	apt-get install -y -qq --no-install-recommends bubblewrap >&2
else
	echo "make run: bubblewrap is missing; install it with: sudo apt-get install bubblewrap" >&2
	exit 1
fi
