#!/usr/bin/env bash
# Runs the adapter tests (processor equality, exact logits, scoring) against the newest transformers that
# pyproject.toml's range admits, or against the version given as $1, in a throw-away target folder beside
# the locked environment. A layout drift in a new release then fails here, naming the version, before a
# user's fresh install meets it. Called by scripts/test.sh; needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
range=$("$py" -c "import tomllib; print(next(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('transformers')))")
locked=$(grep -E '^transformers==' requirements.lock | cut -d= -f3)
spec=${1:+transformers==$1}
spec=${spec:-$range}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$dir/wheel" "$spec" 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$dir"/wheel/transformers-*.whl 2>/dev/null) \
  || { echo "error: could not download $spec from PyPI" >&2; exit 1; }
version=$(basename "$wheel" | cut -d- -f2)
if [ -z "${1:-}" ] && [ "$version" = "$locked" ]; then
  echo "transformers: the newest release in range ($range) is the locked $locked; the main test run covers it"
  exit 0
fi
"$py" -m pip install -q --no-deps --target "$dir/site" "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
loaded=$(PYTHONPATH="$dir/site" "$py" -c "import transformers; print(transformers.__version__)")
[ "$loaded" = "$version" ] || { echo "error: transformers $loaded loaded instead of $version" >&2; exit 1; }
echo "transformers: running the adapter tests against $version (locked: $locked, range: $range)"
PYTHONPATH="$dir/site" HF_HUB_OFFLINE=1 "$py" -m pytest tests/flexselect -q -p no:cacheprovider \
  -o addopts="--import-mode=importlib" \
  || { echo "error: the adapters fail with transformers $version, which pyproject.toml admits ($range)" >&2; exit 1; }
