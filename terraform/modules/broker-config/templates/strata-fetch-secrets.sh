#!/bin/bash
# Writes the brokers' TLS keystore (PEM private key and certificate chain) from
# Secrets Manager to /etc/strata/tls/keystore.pem; run at boot and every hour by
# strata-secrets.timer. The broker re-reads the file every 2 s, so a rotated secret
# reaches new connections without a restart. The file is replaced by a rename, never
# rewritten in place, so the broker never reads half of it.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/strata/bootstrap.env
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
dir=/etc/strata/tls
mkdir -p "$dir"
chown root:strata "$dir"
chmod 0750 "$dir"

tmp=$(mktemp "$dir/.keystore.XXXXXX")
trap 'rm -f "$tmp"' EXIT
aws secretsmanager get-secret-value --secret-id "$STRATA_TLS_KEYSTORE_SECRET_ARN" \
  --query SecretString --output text >"$tmp"
if ! grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$tmp" || ! grep -q -- '-----BEGIN CERTIFICATE-----' "$tmp"; then
  echo "strata-fetch-secrets: $STRATA_TLS_KEYSTORE_SECRET_ARN is not a PEM private key with its certificate chain" >&2
  exit 1
fi
if cmp -s "$tmp" "$dir/keystore.pem"; then
  exit 0
fi
chown root:strata "$tmp"
chmod 0640 "$tmp"
mv -f "$tmp" "$dir/keystore.pem"
echo "strata-fetch-secrets: keystore updated" >&2
