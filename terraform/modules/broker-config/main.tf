# Renders what each broker boots with: /etc/strata/strata.toml (Kafka's broker config
# names; see config/msk-like.toml for every key) and the cloud-init user data that
# writes it, the security-groups file, the bootstrap scripts and the systemd units.

locals {
  # Node ids in numeric order (map keys sort as strings: "1", "11", "2").
  node_ids = [for s in sort([for k in keys(var.brokers) : format("%05d", tonumber(k))]) : tostring(tonumber(s))]

  # Listeners in port order, as an operator reads `listeners`.
  listener_names = [for s in sort([for l, v in var.listeners : format("%05d %s", v.port, l)]) : split(" ", s)[1]]
  protocols      = toset([for l in values(var.listeners) : l.protocol])
  tls_in_use     = contains(local.protocols, "SSL") || contains(local.protocols, "SASL_SSL")

  # Every broker is a voter: the addresses are fixed before the instances exist, so
  # each config can name all of them.
  quorum_voters = join(",", [for k in local.node_ids : "${k}@${var.brokers[k].private_ip}:${var.listeners["CONTROLLER"].port}"])

  common_config = merge(
    {
      "process.roles"                       = "broker,controller"
      "controller.quorum.voters"            = local.quorum_voters
      "controller.listener.names"           = "CONTROLLER"
      "inter.broker.listener.name"          = "REPLICATION"
      "listeners"                           = join(",", [for l in local.listener_names : "${l}://0.0.0.0:${var.listeners[l].port}"])
      "listener.security.protocol.map"      = join(",", [for l in local.listener_names : "${l}:${var.listeners[l].protocol}"])
      "log.dirs"                            = "/var/lib/strata"
      "security.groups.file"                = "/etc/strata/security-groups.json"
      "remote.log.storage.system.enable"    = "true"
      "object_store.url"                    = var.object_store_url
      "object_store.region"                 = var.region
      "object_store.sse"                    = "aws:kms"
      "object_store.sse.kms.key.id"         = var.kms_key_arn
      "object_store.sse.bucket.key.enabled" = "true"
      "default.replication.factor"          = tostring(var.default_replication_factor)
      "min.insync.replicas"                 = tostring(var.min_insync_replicas)
      "metrics.listener"                    = var.metrics_listener
    },
    # The keystore comes from Secrets Manager (strata-fetch-secrets), the truststore
    # from user data; the broker re-reads both every 2 s.
    { for k, v in {
      "ssl.keystore.location" = "/etc/strata/tls/keystore.pem"
    } : k => v if local.tls_in_use },
    { for k, v in {
      "ssl.truststore.location" = "/etc/strata/tls/truststore.pem"
    } : k => v if var.tls_truststore_pem != null },
    { for k, v in {
      "listener.name.ssl.ssl.client.auth" = var.tls_client_authentication ? "required" : "none"
    } : k => v if try(var.listeners["SSL"].protocol == "SSL", false) },
    # Between brokers over TLS, mutual TLS: only holders of a certificate from the
    # trusted CA may replicate or speak to the quorum.
    { for l in ["REPLICATION", "CONTROLLER"] :
      "listener.name.${lower(l)}.ssl.client.auth" => "required" if var.listeners[l].protocol == "SSL"
    },
    { for k, v in {
      "sasl.enabled.mechanisms" = "SCRAM-SHA-512"
    } : k => v if contains(local.protocols, "SASL_SSL") },
    var.extra_broker_config,
  )

  config = {
    for k, b in var.brokers : k => merge(local.common_config, {
      "node.id"     = k
      "broker.rack" = b.rack
      # The controller listener is not advertised (as in Kafka).
      "advertised.listeners" = join(",", [
        for l in local.listener_names : "${l}://${b.host}:${var.listeners[l].port}" if l != "CONTROLLER"
      ])
    })
  }

  # Every value as a TOML basic string (JSON string escapes are valid TOML); keys are
  # quoted so that "log.dirs" is the one key the broker knows, not a table.
  toml = {
    for k, c in local.config : k => join("\n", concat(
      [
        "# Strata broker ${k} of cluster ${var.cluster_name}, written by Terraform",
        "# (terraform/modules/broker-config). Keys are Kafka's broker config names; see",
        "# config/msk-like.toml in the Strata repository for each one.",
        "",
      ],
      [for key in sort(keys(c)) : "${jsonencode(key)} = ${jsonencode(c[key])}"],
      [""],
    ))
  }

  # ---- user data ------------------------------------------------------------------
  # Settings of the bootstrap scripts, sourced by bash: single-quoted, so no value
  # may contain a quote or a newline (checked in outputs.tf).
  bootstrap_settings = {
    for k, b in var.brokers : k => {
      AWS_REGION                     = var.region
      STRATA_BINARY_URL              = var.strata_binary_url
      STRATA_BINARY_SHA256           = var.strata_binary_sha256
      STRATA_CLUSTER_ID              = var.cluster_id
      STRATA_DATA_VOLUME_ID          = b.data_volume_id
      STRATA_TLS_KEYSTORE_SECRET_ARN = var.tls_keystore_secret_arn != null ? var.tls_keystore_secret_arn : ""
      STRATA_SCRAM_ADMIN_SECRET_ARN  = var.scram_admin_secret_arn != null ? var.scram_admin_secret_arn : ""
      STRATA_SCRAM_ADMIN_USERNAME    = var.scram_admin_username
    }
  }
  bootstrap_env = {
    for k, s in local.bootstrap_settings : k => join("", [for name in sort(keys(s)) : "${name}='${s[name]}'\n"])
  }

  common_files = concat(
    [
      { path = "/etc/strata/security-groups.json", mode = "0644", content = file(var.security_groups_file) },
      { path = "/usr/local/sbin/strata-bootstrap", mode = "0755", content = file("${path.module}/templates/strata-bootstrap.sh") },
      { path = "/usr/local/sbin/strata-prepare-data", mode = "0755", content = file("${path.module}/templates/strata-prepare-data.sh") },
      { path = "/etc/systemd/system/strata.service", mode = "0644", content = file("${path.module}/templates/strata.service") },
      { path = "/etc/systemd/system/strata-data.service", mode = "0644", content = file("${path.module}/templates/strata-data.service") },
      { path = "/etc/sysctl.d/90-strata.conf", mode = "0644", content = file("${path.module}/templates/sysctl.conf") },
    ],
    var.tls_keystore_secret_arn == null ? [] : [
      { path = "/usr/local/sbin/strata-fetch-secrets", mode = "0755", content = file("${path.module}/templates/strata-fetch-secrets.sh") },
      { path = "/etc/systemd/system/strata-secrets.service", mode = "0644", content = file("${path.module}/templates/strata-secrets.service") },
      { path = "/etc/systemd/system/strata-secrets.timer", mode = "0644", content = file("${path.module}/templates/strata-secrets.timer") },
    ],
    var.tls_truststore_pem == null ? [] : [
      { path = "/etc/strata/tls/truststore.pem", mode = "0644", content = var.tls_truststore_pem },
    ],
  )

  user_data = {
    for k, b in var.brokers : k => templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      cluster = var.cluster_name
      node_id = k
      files = concat(local.common_files, [
        { path = "/etc/strata/strata.toml", mode = "0644", content = local.toml[k] },
        { path = "/etc/strata/bootstrap.env", mode = "0600", content = local.bootstrap_env[k] },
      ])
    })
  }

  unquotable = flatten([
    for k, s in local.bootstrap_settings : [for name, v in s : "${name} of broker ${k}" if can(regex("['\\n]", v))]
  ])
}
