#!/usr/bin/env bash
# Install the Debian packages medialens needs, only when something is missing (idempotent, fast).
set -euo pipefail
# postgresql: the server for tests/postgres_server.py and, through its dependencies, the client
# (pg_dump, pg_restore, psql) that `medialens backup`/`restore` run for a Postgres instance
# chromium: the browser tests/media_assets/ui/test_browser.py drives through Playwright (never
# `playwright install`); fonts-liberation, only its Recommends, for metric-compatible text in screenshots
# nginx, openssl: deploy/nginx/start.sh, tested in front of the real UIs (tests/deploy/test_nginx.py)
pkgs=(ffmpeg espeak-ng opencv-doc fonts-dejavu-core redis-server postgresql chromium fonts-liberation nginx openssl)
# `apt-deps.sh PKG...` installs those instead (what is missing of them), for other Makefile targets
[ $# -gt 0 ] && pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
