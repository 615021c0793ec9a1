#!/bin/sh
# nginx in front of the Dagster UI (and the results UI when there is one): TLS, basic auth or a
# bearer token, a request rate per client, websockets for live logs. It renders its config from the
# environment, makes a self-signed certificate on first start unless one is mounted, and runs
# nginx in the foreground as whatever user starts it (a container's non-root user, or a test).
#
#   MEDIALENS_PROXY_USER + MEDIALENS_PROXY_PASSWORD   basic auth (or MEDIALENS_PROXY_HTPASSWD: a file)
#   MEDIALENS_PROXY_TOKEN          also accepted as "Authorization: Bearer <token>" (16 to 200 characters)
#   MEDIALENS_PROXY_PORT           HTTPS port of the Dagster UI (8443)
#   MEDIALENS_PROXY_HTTP_PORT      a plain-HTTP port that only redirects to HTTPS (none)
#   MEDIALENS_DAGSTER_UPSTREAM     the webserver, host:port (127.0.0.1:3000)
#   MEDIALENS_RESULTS_UPSTREAM     the results UI (medialens ui), host:port (none: not routed)
#   MEDIALENS_PROXY_RESULTS_PORT   HTTPS port of the results UI (8444)
#   MEDIALENS_PROXY_RATE, _BURST   requests per client: a rate (30r/s) and a burst above it (200)
#   MEDIALENS_TLS_CERT, _KEY       a certificate and key (PEM) to use instead of the self-signed one
#   MEDIALENS_PROXY_SERVER_NAME    the name the self-signed certificate is for (localhost)
#   MEDIALENS_PROXY_STATE          where config, certificate, pid and temp files live
#                                  (/var/lib/medialens-proxy)
set -eu

fail() { echo "medialens proxy: $*" >&2; exit 2; }
port() {
  case "$2" in ''|*[!0-9]*) fail "$1=$2: expected a port number" ;; esac
  [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || fail "$1=$2: expected a port number (1-65535)"
}
hostport() {
  printf '%s' "$2" | grep -Eq '^[A-Za-z0-9_.-]+:[0-9]{1,5}$' || fail "$1=$2: expected host:port"
}

STATE=${MEDIALENS_PROXY_STATE:-/var/lib/medialens-proxy}
PORT=${MEDIALENS_PROXY_PORT:-8443}
HTTP_PORT=${MEDIALENS_PROXY_HTTP_PORT:-}
DAGSTER=${MEDIALENS_DAGSTER_UPSTREAM:-127.0.0.1:3000}
RESULTS=${MEDIALENS_RESULTS_UPSTREAM:-}
RESULTS_PORT=${MEDIALENS_PROXY_RESULTS_PORT:-8444}
RATE=${MEDIALENS_PROXY_RATE:-30r/s}
BURST=${MEDIALENS_PROXY_BURST:-200}
NAME=${MEDIALENS_PROXY_SERVER_NAME:-localhost}
TOKEN=${MEDIALENS_PROXY_TOKEN:-}

port MEDIALENS_PROXY_PORT "$PORT"
[ -z "$HTTP_PORT" ] || port MEDIALENS_PROXY_HTTP_PORT "$HTTP_PORT"
hostport MEDIALENS_DAGSTER_UPSTREAM "$DAGSTER"
if [ -n "$RESULTS" ]; then
  hostport MEDIALENS_RESULTS_UPSTREAM "$RESULTS"
  port MEDIALENS_PROXY_RESULTS_PORT "$RESULTS_PORT"
fi
printf '%s' "$RATE" | grep -Eq '^[0-9]+r/[sm]$' || fail "MEDIALENS_PROXY_RATE=$RATE: expected requests per second or minute, e.g. 30r/s"
case "$BURST" in ''|*[!0-9]*) fail "MEDIALENS_PROXY_BURST=$BURST: expected a number of requests" ;; esac
printf '%s' "$NAME" | grep -Eq '^[A-Za-z0-9.-]+$' || fail "MEDIALENS_PROXY_SERVER_NAME=$NAME: expected a host name"
if [ -n "$TOKEN" ]; then
  # it goes into the config as a quoted string: no quotes, spaces or $ to escape
  printf '%s' "$TOKEN" | grep -Eq '^[A-Za-z0-9._~+/=-]{16,200}$' ||
    fail "MEDIALENS_PROXY_TOKEN: expected 16 to 200 of A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -hex 32)"
fi

mkdir -p "$STATE/tls" "$STATE/tmp"
umask 077

# Credentials: a mounted htpasswd file, or one made from the user and password (apr1, which nginx
# checks itself); without either, only the token opens it; without any, nothing starts.
HTPASSWD="$STATE/htpasswd"
if [ -n "${MEDIALENS_PROXY_HTPASSWD:-}" ]; then
  [ -s "$MEDIALENS_PROXY_HTPASSWD" ] || fail "MEDIALENS_PROXY_HTPASSWD=$MEDIALENS_PROXY_HTPASSWD: no such file, or empty"
  HTPASSWD=$MEDIALENS_PROXY_HTPASSWD
elif [ -n "${MEDIALENS_PROXY_USER:-}" ] || [ -n "${MEDIALENS_PROXY_PASSWORD:-}" ]; then
  [ -n "${MEDIALENS_PROXY_USER:-}" ] && [ -n "${MEDIALENS_PROXY_PASSWORD:-}" ] ||
    fail "MEDIALENS_PROXY_USER and MEDIALENS_PROXY_PASSWORD go together"
  case "$MEDIALENS_PROXY_USER" in *:*) fail "MEDIALENS_PROXY_USER: no ':' in a user name" ;; esac
  hash=$(printf '%s' "$MEDIALENS_PROXY_PASSWORD" | openssl passwd -apr1 -stdin)
  printf '%s:%s\n' "$MEDIALENS_PROXY_USER" "$hash" > "$HTPASSWD.new" && mv "$HTPASSWD.new" "$HTPASSWD"
elif [ -n "$TOKEN" ]; then
  : > "$HTPASSWD"
else
  fail "no credentials: set MEDIALENS_PROXY_USER and MEDIALENS_PROXY_PASSWORD, MEDIALENS_PROXY_HTPASSWD or MEDIALENS_PROXY_TOKEN (the UIs are never served without)"
fi

# TLS: the mounted pair, or a self-signed one made once and kept in $STATE/tls.
if [ -n "${MEDIALENS_TLS_CERT:-}" ] || [ -n "${MEDIALENS_TLS_KEY:-}" ]; then
  CERT=${MEDIALENS_TLS_CERT:-}
  KEY=${MEDIALENS_TLS_KEY:-}
  [ -s "$CERT" ] && [ -s "$KEY" ] || fail "MEDIALENS_TLS_CERT and MEDIALENS_TLS_KEY: both must name readable PEM files"
else
  CERT="$STATE/tls/cert.pem"
  KEY="$STATE/tls/key.pem"
  if [ ! -s "$CERT" ] || [ ! -s "$KEY" ]; then
    echo "medialens proxy: making a self-signed certificate for $NAME (mount your own: MEDIALENS_TLS_CERT/_KEY)" >&2
    openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 825 -subj "/CN=$NAME" \
      -addext "subjectAltName=DNS:$NAME,DNS:localhost,IP:127.0.0.1" \
      -keyout "$KEY.new" -out "$CERT.new" 2>/dev/null || fail "openssl could not make a certificate"
    mv "$KEY.new" "$KEY" && mv "$CERT.new" "$CERT"
  fi
  echo "medialens proxy: certificate $(openssl x509 -in "$CERT" -noout -fingerprint -sha256)" >&2
fi

# As root (a test, a container without USER), the workers run as an unprivileged user that can
# read the password file and write the temp folders, never as root.
USER_LINE=""
if [ "$(id -u)" = 0 ]; then
  RUN_AS=${MEDIALENS_PROXY_RUN_AS:-www-data}
  id "$RUN_AS" >/dev/null 2>&1 || fail "running as root: MEDIALENS_PROXY_RUN_AS=$RUN_AS is no user here (nginx's workers need one)"
  USER_LINE="user $RUN_AS $(id -gn "$RUN_AS");"
  chown -R "$RUN_AS" "$STATE/tmp"
  if [ "$HTPASSWD" = "$STATE/htpasswd" ]; then
    chgrp "$(id -gn "$RUN_AS")" "$HTPASSWD" && chmod 640 "$HTPASSWD"
  fi
  chmod 755 "$STATE"
  su -s /bin/sh -c "test -r '$HTPASSWD' && test -w '$STATE/tmp'" "$RUN_AS" ||
    fail "running as root: $RUN_AS (nginx's workers) cannot read $HTPASSWD or write $STATE/tmp; put MEDIALENS_PROXY_STATE where $RUN_AS can reach it"
fi

TOKEN_ENTRY=""
[ -z "$TOKEN" ] || TOKEN_ENTRY="\"Bearer $TOKEN\" off;"

# What every proxied location shares: websockets (Dagster's live run logs, Streamlit's session),
# long-lived connections, the client's address and scheme; the credentials stay here.
proxied() {
  cat <<CONF
      proxy_pass http://$1;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$medialens_connection;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header Authorization "";
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
CONF
}

tls_server() {  # $1 port, $2 upstream, $3 max upload size
  cat <<CONF
  server {
    listen $1 ssl;
    server_name _;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    add_header Strict-Transport-Security "max-age=31536000" always;
    client_max_body_size $3;
    limit_req zone=medialens burst=$BURST nodelay;
    auth_basic \$medialens_realm;
    auth_basic_user_file $HTPASSWD;
    location = /proxy-health {
      auth_basic off;
      default_type text/plain;
      return 200 "ok\n";
    }
    location / {
$(proxied "$2")
    }
  }
CONF
}

CONF="$STATE/nginx.conf"
{
  cat <<CONF
# rendered by deploy/nginx/start.sh; edits are overwritten at the next start
$USER_LINE
worker_processes auto;
pid $STATE/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log /dev/stdout;
  server_tokens off;
  client_body_temp_path $STATE/tmp/body;
  proxy_temp_path $STATE/tmp/proxy;
  fastcgi_temp_path $STATE/tmp/fastcgi;
  uwsgi_temp_path $STATE/tmp/uwsgi;
  scgi_temp_path $STATE/tmp/scgi;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:medialens_tls:10m;
  # a map key must fit a hash bucket (64 bytes by default: "Bearer " + a 40-character token did not);
  # set before the first map, which fixes it
  map_hash_bucket_size 256;
  map \$http_upgrade \$medialens_connection { default upgrade; '' close; }
  # "off" turns basic auth off for this request: the bearer token stands in for a password
  map \$http_authorization \$medialens_realm { default "medialens"; $TOKEN_ENTRY }
  # per client address, checked before the credentials, so guessing passwords is slowed down too
  limit_req_zone \$binary_remote_addr zone=medialens:10m rate=$RATE;
  limit_req_status 429;
$(tls_server "$PORT" "$DAGSTER" 64m)
CONF
  [ -z "$RESULTS" ] || tls_server "$RESULTS_PORT" "$RESULTS" 4g
  if [ -n "$HTTP_PORT" ]; then
    cat <<CONF
  server {
    listen $HTTP_PORT;
    server_name _;
    return 301 https://\$host:$PORT\$request_uri;
  }
CONF
  fi
  echo "}"
} > "$CONF.new"
mv "$CONF.new" "$CONF"

nginx -t -q -p "$STATE" -c "$CONF" -e stderr || fail "nginx refused the rendered config $CONF"
echo "medialens proxy: Dagster UI on https://$NAME:$PORT -> $DAGSTER${RESULTS:+, results UI on https://$NAME:$RESULTS_PORT -> $RESULTS}" >&2
exec nginx -p "$STATE" -c "$CONF" -e stderr -g "daemon off;"
