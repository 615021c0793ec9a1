#!/usr/bin/env bash
# Build the medialens image (deploy/Dockerfile) from exactly the tested dependency set.
#
#   deploy/build-image.sh [TAG]        (default medialens:latest)
#   BASE_IMAGE   the Debian 12 image to build on (default debian:bookworm-slim)
#   PYTHON       the Python whose pip resolves the wheels (default .venv/bin/python: `make install`)
#   DOCKER       the docker CLI (default docker)
#
# The wheels come from this machine's package indexes and local folders (pip's own config), with
# constraints.txt pinning every version, so a package that only this host can see (the CPU build
# of torch) reaches the image too; the build itself installs with no index at all.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-medialens:latest}
python=${PYTHON:-.venv/bin/python}
docker=${DOCKER:-docker}
base=${BASE_IMAGE:-debian:bookworm-slim}
wheels=deploy/build/wheels
mkdir -p "$wheels"
start=$(date +%s)
"$python" -m pip wheel -q -w "$wheels" -c constraints.txt .
# what a dependency needs only on Debian 12's python3 (3.11.2) and this Python may not (redis)
"$python" -m pip wheel -q --no-deps -w "$wheels" -c constraints.txt async-timeout
# BlazePose/BlazeFace weights ship inside this wheel (resources/model_files.py fetches it by name)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 -d "$wheels" "$(sed -n 's/^MEDIAPIPE_WHEEL = "\(.*\)"/\1/p' resources/model_files.py)"
echo "wheels: $(ls "$wheels" | wc -l) files, $(du -sh "$wheels" | cut -f1), $(( $(date +%s) - start )) s"
start=$(date +%s)
"$docker" build -f deploy/Dockerfile --build-arg BASE_IMAGE="$base" -t "$tag" .
echo "image $tag built on $base in $(( $(date +%s) - start )) s"
