#!/usr/bin/env bash
# Build the CompressAI peer environment: a Python 3.11 venv with torch + compressai 1.2.8.
#
#   bash scripts/make_peer_env.sh DIR [--force]
#
# It lives apart from the jaxlic venv because compressai 1.2.8 needs numpy < 2 while jax
# needs numpy >= 2. Versions are pinned in peers/requirements-lock.txt (why each one: see
# that file and docs/compressai-notes.md).
#
# Idempotent: DIR/.stamp records the lock file's hash; a re-run with the same lock exits at
# once. When the peer cannot be built (no Python 3.11, no registry, not enough disk) it
# writes the reason to DIR/UNAVAILABLE and exits 0, so `make test` still runs and the peer
# tests skip with that reason. A recorded failure is not retried for the same lock unless
# --force is given (or DIR is removed), so an offline machine does not pay for it each run.
set -u -o pipefail

DIR="${1:-.peer}"
FORCE=0
[ "${2:-}" = "--force" ] && FORCE=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/peers/requirements-lock.txt"
mkdir -p "$(dirname "$DIR")"
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"
STAMP="$DIR/.stamp"
UNAVAILABLE="$DIR/UNAVAILABLE"
LOG="$DIR/install.log"
NEED_GB=8          # torch + CUDA runtime wheels unpack to ~5 GB; pip needs room to unpack
START=$(date +%s)

say() { echo "[peer] $*" >&2; }
elapsed() { echo "$(( $(date +%s) - START ))s"; }

if [ ! -f "$LOCK" ]; then
  say "missing $LOCK"; exit 1   # a broken checkout is a real error, not an unavailable peer
fi
KEY="$(sha256sum "$LOCK" | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && [ -x "$DIR/bin/python" ]; then
  say "CompressAI peer ready in $DIR (lock $KEY)"
  exit 0
fi
if [ -f "$UNAVAILABLE" ] && [ "$FORCE" = 0 ] && grep -q "^lock: $KEY\$" "$UNAVAILABLE"; then
  say "CompressAI peer unavailable (recorded earlier): $(head -1 "$UNAVAILABLE")"
  say "peer tests will be skipped; retry with: bash scripts/make_peer_env.sh $DIR --force"
  exit 0
fi

unavailable() {
  # Record why, keep the log for the curious, and let the main test suite go on.
  mkdir -p "$DIR"
  rm -f "$STAMP"
  { echo "$1"; echo "lock: $KEY"; echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"; } > "$UNAVAILABLE"
  say "CompressAI peer NOT built: $1"
  [ -f "$LOG" ] && { say "last lines of $LOG:"; tail -n 15 "$LOG" >&2; }
  say "peer tests will be skipped; retry with: bash scripts/make_peer_env.sh $DIR --force"
  exit 0
}

# --- find Python 3.11 (PEER_PYTHON overrides) ---------------------------------------------
is311() { "$1" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' >/dev/null 2>&1; }
PY=""
for cand in "${PEER_PYTHON:-}" python3.11 \
            "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 \
            /usr/bin/python3.11 /usr/local/bin/python3.11 python3; do
  [ -n "$cand" ] || continue
  p="$(command -v "$cand" 2>/dev/null)" || continue
  if is311 "$p"; then PY="$p"; break; fi
done
# A fresh directory for a fresh attempt: never build on top of a half-installed venv.
rm -rf "$DIR"
mkdir -p "$DIR"
[ -n "$PY" ] || unavailable "no Python 3.11 with venv/ensurepip found (tried PEER_PYTHON, python3.11, pyenv 3.11.*, /usr/bin and /usr/local/bin python3.11, python3); install one, e.g. 'pyenv install 3.11' or 'apt-get install python3.11-venv'"

free_kb="$(df -Pk "$DIR" | awk 'NR==2 {print $4}')"
if [ -n "$free_kb" ] && [ "$free_kb" -lt $(( NEED_GB * 1024 * 1024 )) ]; then
  unavailable "only $(( free_kb / 1024 / 1024 )) GB free under $DIR; the peer needs about $NEED_GB GB"
fi

say "building the CompressAI peer in $DIR with $PY ($("$PY" -V 2>&1)); log: $LOG"
"$PY" -m venv "$DIR" >>"$LOG" 2>&1 || unavailable "python -m venv failed with $PY"
PIP=("$DIR/bin/python" -m pip install --no-input --disable-pip-version-check --progress-bar off)

say "installing the pinned set (torch 2.14.1, torchvision 0.29.1, compressai 1.2.8; ~5 GB) ..."
if ! "${PIP[@]}" --no-deps -r "$LOCK" >>"$LOG" 2>&1; then
  # A pin that the registry no longer serves should not cost us the peer: fall back to the
  # resolver with the same top-level pins (heavier: it also pulls triton and matplotlib).
  say "locked install failed after $(elapsed); trying the resolver with the top-level pins ..."
  "${PIP[@]}" compressai==1.2.8 torch==2.14.1 torchvision==0.29.1 numpy==1.26.4 >>"$LOG" 2>&1 \
    || unavailable "pip could not install the peer packages (no registry reachable, or a pinned version is gone; see $LOG)"
fi
say "installed in $(elapsed); verifying import and a forward pass ..."

# Verify what the peer needs: import compressai, build each architecture we drive, and run
# forward + compress + decompress once on a small random image.
if ! "$DIR/bin/python" - >>"$LOG" 2>&1 <<'PYEOF'
import warnings
warnings.simplefilter("ignore")
import torch, compressai
from compressai.zoo import bmshj2018_factorized, bmshj2018_hyperprior, mbt2018_mean
torch.manual_seed(0)
x = torch.rand(1, 3, 64, 64)
for build in (bmshj2018_factorized, bmshj2018_hyperprior, mbt2018_mean):
    net = build(quality=1, pretrained=False).eval()
    net.update(force=True)
    with torch.no_grad():
        out = net(x)
        enc = net.compress(x)
        dec = net.decompress(enc["strings"], enc["shape"])
    assert out["x_hat"].shape == x.shape and dec["x_hat"].shape == x.shape
print("peer verified: compressai", compressai.__version__, "torch", torch.__version__)
PYEOF
then
  unavailable "the peer installed but 'import compressai' or a forward pass failed (see $LOG)"
fi

echo "$KEY" > "$STAMP"
size="$(du -sh "$DIR" 2>/dev/null | cut -f1)"
say "CompressAI peer ready in $DIR ($size, $(elapsed))"
exit 0
