#!/usr/bin/env bash
# Runs Strata against a local S3-compatible server without docker.
#
# The server is moto's server mode (installed from PyPI when missing); the script
# starts it on 127.0.0.1, creates the bucket, then runs the broker with
# config/moto.toml (tiered storage on, object store = the moto bucket). Ctrl-C stops
# everything it started.
#
#   localstack/run-local.sh                 # moto on :4566 + strata on :9092
#   localstack/run-local.sh cluster         # moto + three brokers (config/cluster-3-node)
#   localstack/run-local.sh --s3-only       # just moto + bucket (used by the test suite)
#   localstack/run-local.sh --port 5555 --bucket mybucket --data ./data-moto
#   localstack/run-local.sh --override log.segment.bytes=1048576   # any broker key
#
# `cluster` runs nodes 1-3 of config/cluster-3-node/ (clients on 127.0.0.1:9092-9094,
# quorum on 19091-19093, /metrics on 127.0.0.1:9644-9646), all tiering every topic to
# s3://BUCKET/cluster-3 in moto, with data under --data (default ./data-cluster-moto)
# and logs in a temporary directory it prints. It builds the release binary once
# unless STRATA_BIN names one. --override applies to all three brokers.
#
# Environment: MOTO_VERSION (default 5.2.5), S3_PORT, S3_BUCKET, STRATA_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${S3_PORT:-4566}"
BUCKET="${S3_BUCKET:-strata}"
DATA=""
S3_ONLY=0
CLUSTER=0
BROKER_ARGS=()
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
while [ $# -gt 0 ]; do
  case "$1" in
    --s3-only) S3_ONLY=1 ;;
    cluster|--cluster) CLUSTER=1 ;;
    --port) PORT="$2"; shift ;;
    --bucket) BUCKET="$2"; shift ;;
    --data) DATA="$2"; shift ;;
    --override) BROKER_ARGS+=(--override "$2"); shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
BROKER_PIDS=()
cleanup() {
  # Brokers first (SIGTERM: a controlled shutdown), then moto.
  for pid in "${BROKER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BROKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

if [ "$CLUSTER" = 0 ]; then
  cargo run --release -- --config config/moto.toml \
    --override "object_store.url=s3://${BUCKET}/strata" \
    --override "object_store.endpoint=${ENDPOINT}" \
    --override "log.dirs=${DATA:-./data-moto}" \
    "${BROKER_ARGS[@]}"
  exit $?
fi

# Three brokers, each also a metadata voter, from config/cluster-3-node/broker-N.toml
# plus the object store and a metrics listener per node.
if [ -n "${STRATA_BIN:-}" ]; then
  BIN="$STRATA_BIN"
else
  cargo build --release --bin strata
  BIN="${CARGO_TARGET_DIR:-target}/release/strata"
fi
DATA="${DATA:-./data-cluster-moto}"
for n in 1 2 3; do
  "$BIN" --config "config/cluster-3-node/broker-${n}.toml" \
    --override "log.dirs=${DATA}/broker-${n}" \
    --override "log.remote.storage.enable=true" \
    --override "object_store.url=s3://${BUCKET}/cluster-3" \
    --override "object_store.endpoint=${ENDPOINT}" \
    --override "object_store.allow_http=true" \
    --override "object_store.region=us-east-1" \
    --override "metrics.listener=127.0.0.1:$((9643 + n))" \
    "${BROKER_ARGS[@]}" >"$LOG_DIR/broker-${n}.log" 2>&1 &
  BROKER_PIDS+=($!)
done
echo "brokers 1-3 (pids ${BROKER_PIDS[*]}) on 127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094;"
echo "  /metrics on 127.0.0.1:9644-9646; logs in ${LOG_DIR}/broker-N.log; Ctrl-C stops all"
# Runs until Ctrl-C (or SIGTERM) or until a broker exits; then the EXIT trap stops
# the rest. `sleep & wait` lets the trap run as soon as the signal arrives.
STOPPING=0
trap 'STOPPING=1' INT TERM
while [ "$STOPPING" = 0 ]; do
  for i in 0 1 2; do
    if [ "$STOPPING" = 0 ] && ! kill -0 "${BROKER_PIDS[$i]}" 2>/dev/null; then
      code=0
      wait "${BROKER_PIDS[$i]}" || code=$?
      echo "broker $((i + 1)) exited with ${code}; last lines of its log:" >&2
      tail -n 20 "$LOG_DIR/broker-$((i + 1)).log" >&2
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
echo "stopping the brokers and moto"
