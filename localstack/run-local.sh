#!/usr/bin/env bash
# Runs Strata against a local S3-compatible server without docker.
#
# The server is moto's server mode (installed from PyPI when missing); the script
# starts it on 127.0.0.1, creates the bucket, then runs the broker with
# config/moto.toml (tiered storage on, object store = the moto bucket). Ctrl-C stops
# both.
#
#   localstack/run-local.sh                 # moto on :4566 + strata on :9092
#   localstack/run-local.sh --s3-only       # just moto + bucket (used by the test suite)
#   localstack/run-local.sh --port 5555 --bucket mybucket --data ./data-moto
#   localstack/run-local.sh --override log.segment.bytes=1048576   # any broker key
#
# Environment: MOTO_VERSION (default 5.2.5), S3_PORT, S3_BUCKET.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${S3_PORT:-4566}"
BUCKET="${S3_BUCKET:-strata}"
DATA="./data-moto"
S3_ONLY=0
BROKER_ARGS=()
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
while [ $# -gt 0 ]; do
  case "$1" in
    --s3-only) S3_ONLY=1 ;;
    --port) PORT="$2"; shift ;;
    --bucket) BUCKET="$2"; shift ;;
    --data) DATA="$2"; shift ;;
    --override) BROKER_ARGS+=(--override "$2"); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if ! python3 -c "import moto.server" >/dev/null 2>&1; then
  echo "installing moto[server]==${MOTO_VERSION} from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
fi

LOG_DIR="$(mktemp -d)"
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOG_DIR/moto.log" 2>&1 &
MOTO_PID=$!
cleanup() { kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ENDPOINT="http://127.0.0.1:${PORT}"
python3 - "$ENDPOINT" "$BUCKET" <<'PY'
import sys, time, urllib.request, urllib.error
endpoint, bucket = sys.argv[1], sys.argv[2]
deadline = time.time() + 30
while True:
    try:
        urllib.request.urlopen(endpoint + "/", timeout=1).read()
        break
    except urllib.error.HTTPError:
        break  # it answers
    except Exception:
        if time.time() > deadline:
            sys.exit(f"moto did not start on {endpoint}")
        time.sleep(0.1)
req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
try:
    urllib.request.urlopen(req, timeout=5).read()
except urllib.error.HTTPError as e:
    if e.code != 409:  # BucketAlreadyOwnedByYou / exists
        raise
PY
echo "S3 endpoint ${ENDPOINT} bucket ${BUCKET} ready (moto pid ${MOTO_PID})"

if [ "$S3_ONLY" = 1 ]; then
  wait "$MOTO_PID"
  exit 0
fi

# moto accepts any credentials; object_store still signs requests.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
cargo run --release -- --config config/moto.toml \
  --override "object_store.url=s3://${BUCKET}/strata" \
  --override "object_store.endpoint=${ENDPOINT}" \
  --override "log.dirs=${DATA}" \
  "${BROKER_ARGS[@]}"
