#!/usr/bin/env bash
# Runs every test: the Rust suites (in-process and process brokers with librdkafka
# through the rdkafka crate), the Python suite (kafka-python, confluent-kafka and kcat
# against a `strata` process) and the kafkajs suite under tests/node. Installs the few
# system, Python and npm packages it needs, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# `ss` reads the broker's socket buffer sizes in tests/config_keys.rs.
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
# `script` gives tests/startup.rs a terminal to check colour against.
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
# The TLS tests: librdkafka built against OpenSSL, certificates made with openssl, and
# `ip netns` for the security-group tests (iproute2 above).
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# checkov (tests/python/test_terraform.py) gets its own venv; Debian's python3 needs
# python3-venv for `python3 -m venv`.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
# checkov lints terraform/ (tests/python/test_terraform.py); in a venv outside the clone
# so that its many pinned dependencies cannot clash with the test packages above.
CHECKOV_VERSION=3.3.30
CHECKOV_VENV="${HOME}/.cache/strata-checkov-venv"
if ! [ -x "$CHECKOV_VENV/bin/checkov" ] || [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
export STRATA_CHECKOV="$CHECKOV_VENV/bin/checkov"
# promtool (tests/python/test_dashboards.py checks docs/prometheus/alerts.yml and its
# unit tests with it): unpacked from Debian's prometheus package, never installed (the
# package would set up a Prometheus service).
PROMTOOL_DIR="${HOME}/.cache/strata-promtool"
if ! [ -x "$PROMTOOL_DIR/usr/bin/promtool" ]; then
  rm -rf "$PROMTOOL_DIR" && mkdir -p "$PROMTOOL_DIR"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  # apt-get download needs the package lists, which a fresh machine may not have yet.
  (cd "$PROMTOOL_DIR" && { apt-get download -qq prometheus 2>/dev/null \
      || { $SUDO apt-get update -qq && apt-get download -qq prometheus; }; } \
    && dpkg -x prometheus_*.deb . && rm -f prometheus_*.deb)
fi
export PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

# Rust: unit tests, in-process broker tests and process/crash tests.
cargo test --lib --bins --tests --no-fail-fast

# Python clients against the broker binary built above.
cargo build --bin strata
export STRATA_TEST_BINARY="${CARGO_TARGET_DIR:-target}/debug/strata"
python3 -m pytest -q tests/python

# kafkajs (node's built-in test runner) against the same binary.
(cd tests/node && npm test --silent)
