#!/bin/bash
# First boot of a Strata broker, run once by cloud-init (runcmd): installs the binary,
# mounts the data volume, fetches the TLS keystore, formats the storage with the
# cluster id (and the first SCRAM user) and starts the broker. Its output is in
# /var/log/cloud-init-output.log. Settings: /etc/strata/bootstrap.env (from Terraform).
set -euo pipefail
# shellcheck source=/dev/null
. /etc/strata/bootstrap.env
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
log() { echo "strata-bootstrap: $*" >&2; }

# 1. The binary, installed only if its SHA-256 is the one Terraform was given.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
case "$STRATA_BINARY_URL" in
  s3://*) aws s3 cp --only-show-errors "$STRATA_BINARY_URL" "$tmp" ;;
  https://*) curl --fail --silent --show-error --location --retry 5 --retry-connrefused -o "$tmp" "$STRATA_BINARY_URL" ;;
  *) log "unsupported binary URL $STRATA_BINARY_URL"; exit 1 ;;
esac
if ! echo "$STRATA_BINARY_SHA256  $tmp" | sha256sum --check --status -; then
  log "SHA-256 of $STRATA_BINARY_URL is $(sha256sum "$tmp" | cut -d' ' -f1), expected $STRATA_BINARY_SHA256: not installing"
  exit 1
fi
install -m 0755 -o root -g root "$tmp" /usr/local/bin/strata
log "installed $(/usr/local/bin/strata --version)"

# 2. Host settings and the data directory (instance store or EBS) at /var/lib/strata.
sysctl --system >/dev/null
systemctl daemon-reload
systemctl enable --now strata-data.service

# 3. The TLS keystore (a failure here stops the bootstrap: the broker would refuse to
#    start without it anyway), then hourly refreshes so a rotated secret arrives.
if [ -n "$STRATA_TLS_KEYSTORE_SECRET_ARN" ]; then
  systemctl enable strata-secrets.service strata-secrets.timer
  systemctl start strata-secrets.service
  systemctl start strata-secrets.timer
fi

# 4. Format once, as kafka-storage format: the cluster id shared by every broker and,
#    if configured, the first SCRAM user (the quorum applies it at first start and
#    skips it when it already has it, so every broker may carry it). A broker
#    replaced later formats the same way and joins the existing quorum.
if [ ! -e /var/lib/strata/meta.properties ]; then
  args=(--config /etc/strata/strata.toml storage format --cluster-id "$STRATA_CLUSTER_ID")
  if [ -n "$STRATA_SCRAM_ADMIN_SECRET_ARN" ]; then
    password=$(aws secretsmanager get-secret-value --secret-id "$STRATA_SCRAM_ADMIN_SECRET_ARN" \
      --query SecretString --output text)
    # The credential syntax is SCRAM-SHA-512=[name=...,password=...]: keep the
    # password to characters that cannot end it early.
    if ! [[ "$password" =~ ^[A-Za-z0-9]{12,}$ ]]; then
      log "the SCRAM admin password must be at least 12 letters and digits (aws secretsmanager get-random-password --exclude-punctuation)"
      exit 1
    fi
    args+=(--add-scram "SCRAM-SHA-512=[name=${STRATA_SCRAM_ADMIN_USERNAME},password=${password}]")
  fi
  runuser -u strata -- /usr/local/bin/strata "${args[@]}"
fi

# 5. Start; systemd restarts it on failure and at every boot.
systemctl enable --now strata.service
log "strata.service started"
