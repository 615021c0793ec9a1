#!/usr/bin/env bash
# What `make deploy-test` needs besides `make install`: a Docker daemon binary, Debian's
# docker-compose (1.29) and debootstrap (the base image is made locally: no image registry is
# reachable in CI). Installed only when missing, so a machine with Docker's own packages keeps them.
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io iptables)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ -x /usr/bin/docker ] || command -v docker >/dev/null || missing+=(docker.io)
[ ${#missing[@]} -eq 0 ] && exit 0
exec bash "$(dirname "$0")/apt-deps.sh" "${missing[@]}"
