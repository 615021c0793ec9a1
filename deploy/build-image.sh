#!/usr/bin/env bash
# Build the medialens image (deploy/Dockerfile) from exactly the tested dependency set.
#
#   deploy/build-image.sh [TAG]        (default medialens:latest, medialens:cuda for VARIANT=cuda)
#   deploy/build-image.sh --check      only write and check the variant's constraints (no download)
#   VARIANT      cpu (default: the tested set) or cuda: the same set with PyTorch's CUDA build,
#                onnxruntime-gpu and the CUDA libraries (cuBLAS, cuDNN) that CTranslate2 loads,
#                for hosts with an NVIDIA GPU and the NVIDIA container toolkit (several GB more)
#   BASE_IMAGE   the Debian 12 image to build on (default debian:bookworm-slim)
#   PYTHON       the Python whose pip resolves the wheels (default .venv/bin/python: `make install`)
#   DOCKER       the docker CLI (default docker)
#
# The wheels come from this machine's package indexes and local folders (pip's own config), with
# deploy/build/VARIANT/constraints.txt pinning every version (constraints.txt itself for cpu), so a
# package that only this host can see (the CPU build of torch) reaches the image too; the build
# itself installs with no index at all.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${VARIANT:-cpu}
check=0
[ "${1:-}" = --check ] && { check=1; shift; }
python=${PYTHON:-.venv/bin/python}
docker=${DOCKER:-docker}
base=${BASE_IMAGE:-debian:bookworm-slim}
out=deploy/build/$variant
wheels=$out/wheels
mkdir -p "$wheels"
case "$variant" in
  cpu)
    tag=${1:-medialens:latest}
    cp constraints.txt "$out/constraints.txt" ;;
  cuda)
    tag=${1:-medialens:cuda}
    # PyTorch's default (CUDA) build of the same version, pip taking the CUDA libraries it depends on
    # (nvidia-cublas-cu12, nvidia-cudnn-cu12, ...); onnxruntime-gpu of the same version as onnxruntime
    # (which stays pinned: packages require it by that name; the Dockerfile swaps one for the other).
    sed -e 's/^torch==\([^+ ]*\)+cpu/torch==\1/' -e 's/^\(onnxruntime==.*\)$/\1\nonnxruntime-gpu==PLACEHOLDER/' \
      constraints.txt > "$out/constraints.txt"
    ort=$(sed -n 's/^onnxruntime==\([^ ]*\).*/\1/p' "$out/constraints.txt")
    sed -i "s/^onnxruntime-gpu==PLACEHOLDER/onnxruntime-gpu==$ort/" "$out/constraints.txt" ;;
  *)
    echo "build-image.sh: VARIANT=$variant: expected cpu or cuda" >&2; exit 2 ;;
esac
ort=$(sed -n 's/^onnxruntime==\([^ ]*\).*/\1/p' "$out/constraints.txt")
if [ "$variant" = cuda ]; then
  grep -q '^torch==[0-9.]*\( \|$\)' "$out/constraints.txt" && grep -q "^onnxruntime-gpu==$ort" "$out/constraints.txt" || {
    echo "build-image.sh: $out/constraints.txt: no CUDA torch or onnxruntime-gpu pin" >&2; exit 1; }
fi
echo "variant $variant: $out/constraints.txt (torch $(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$out/constraints.txt"), onnxruntime $ort)"
[ $check = 1 ] && exit 0
start=$(date +%s)
"$python" -m pip wheel -q -w "$wheels" -c "$out/constraints.txt" ".[deploy]"
if [ "$variant" = cuda ]; then
  # the GPU build of onnxruntime replaces the CPU one in the image (one `onnxruntime` module)
  "$python" -m pip wheel -q -w "$wheels" -c "$out/constraints.txt" "onnxruntime-gpu==$ort"
fi
# what a dependency needs only on Debian 12's python3 (3.11.2) and this Python may not (redis)
"$python" -m pip wheel -q --no-deps -w "$wheels" -c "$out/constraints.txt" async-timeout
# BlazePose/BlazeFace weights ship inside this wheel (resources/model_files.py fetches it by name)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 -d "$wheels" "$(sed -n 's/^MEDIAPIPE_WHEEL = "\(.*\)"/\1/p' resources/model_files.py)"
echo "wheels: $(ls "$wheels" | wc -l) files, $(du -sh "$wheels" | cut -f1), $(( $(date +%s) - start )) s"
start=$(date +%s)
"$docker" build -f deploy/Dockerfile --build-arg BASE_IMAGE="$base" --build-arg VARIANT="$variant" -t "$tag" .
echo "image $tag ($variant) built on $base in $(( $(date +%s) - start )) s"
