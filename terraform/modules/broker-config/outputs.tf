output "config" {
  description = "Each broker's config keys and values, by node id."
  value       = local.config
}

output "toml" {
  description = "Each broker's /etc/strata/strata.toml, by node id."
  value       = local.toml

  precondition {
    condition     = !local.tls_in_use || var.tls_keystore_secret_arn != null
    error_message = "A listener uses SSL or SASL_SSL: tls_keystore_secret_arn is required."
  }
  precondition {
    condition     = var.tls_truststore_pem != null || (var.listeners["REPLICATION"].protocol != "SSL" && var.listeners["CONTROLLER"].protocol != "SSL" && !var.tls_client_authentication)
    error_message = "TLS between brokers and client certificates need tls_truststore_pem (the CA)."
  }
}

output "user_data" {
  description = "Each broker's cloud-init user data (#cloud-config), by node id."
  value       = local.user_data

  precondition {
    condition     = length(local.unquotable) == 0
    error_message = "Values written to /etc/strata/bootstrap.env cannot contain a quote or newline: ${join(", ", local.unquotable)}."
  }
}

output "quorum_voters" {
  description = "controller.quorum.voters."
  value       = local.quorum_voters
}

output "node_ids" {
  description = "Node ids in numeric order."
  value       = local.node_ids
}
