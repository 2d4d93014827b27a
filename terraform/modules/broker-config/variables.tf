variable "cluster_name" {
  description = "Cluster name, for comments in the rendered files."
  type        = string
}

variable "brokers" {
  description = "The brokers by node id (\"1\", \"2\", ...): private_ip (used in controller.quorum.voters), host (advertised to clients and peers), rack (broker.rack: the availability zone id) and data_volume_id (an EBS volume holding the data, or \"\" for the NVMe instance store)."
  type = map(object({
    private_ip     = string
    host           = string
    rack           = string
    data_volume_id = optional(string, "")
  }))

  validation {
    condition     = alltrue([for k in keys(var.brokers) : can(regex("^[1-9][0-9]*$", k))])
    error_message = "brokers keys are node ids: 1, 2, 3, ..."
  }

  validation {
    condition     = alltrue([for b in values(var.brokers) : can(cidrhost("${b.private_ip}/32", 0))])
    error_message = "Every broker needs an IPv4 private_ip."
  }
}

variable "listeners" {
  description = "The broker's listeners by name (upper case): port and security protocol (PLAINTEXT, SSL, SASL_SSL). CONTROLLER carries the metadata quorum and REPLICATION the replication between brokers; both must be present."
  type = map(object({
    port     = number
    protocol = string
  }))

  validation {
    condition     = contains(keys(var.listeners), "CONTROLLER") && contains(keys(var.listeners), "REPLICATION")
    error_message = "listeners must include CONTROLLER and REPLICATION."
  }

  validation {
    condition     = alltrue([for l in values(var.listeners) : contains(["PLAINTEXT", "SSL", "SASL_SSL"], l.protocol)])
    error_message = "Listener protocols are PLAINTEXT, SSL or SASL_SSL."
  }

  validation {
    condition     = !contains(["SASL_SSL"], var.listeners["CONTROLLER"].protocol) && !contains(["SASL_SSL"], var.listeners["REPLICATION"].protocol)
    error_message = "CONTROLLER and REPLICATION cannot use SASL (the broker refuses SASL between brokers); use SSL or PLAINTEXT."
  }
}

variable "tls_keystore_secret_arn" {
  description = "Secrets Manager secret holding the PEM keystore (private key and certificate chain), fetched at boot and hourly to /etc/strata/tls/keystore.pem. Required when a listener uses SSL or SASL_SSL."
  type        = string
  default     = null
}

variable "tls_truststore_pem" {
  description = "PEM CA certificates written to /etc/strata/tls/truststore.pem (ssl.truststore.location). Required when REPLICATION or CONTROLLER uses SSL or client certificates are required."
  type        = string
  default     = null
}

variable "tls_client_authentication" {
  description = "Require client certificates on the SSL client listener (ssl.client.auth=required)."
  type        = bool
  default     = false
}

variable "object_store_url" {
  description = "object_store.url: s3://BUCKET/PREFIX."
  type        = string
}

variable "region" {
  description = "AWS region (object_store.region, and the region the bootstrap's AWS CLI calls)."
  type        = string
}

variable "kms_key_arn" {
  description = "object_store.sse.kms.key.id: the KMS key the brokers ask S3 to encrypt every object with."
  type        = string
}

variable "default_replication_factor" {
  description = "default.replication.factor."
  type        = number
  default     = 3
}

variable "min_insync_replicas" {
  description = "min.insync.replicas."
  type        = number
  default     = 2
}

variable "metrics_listener" {
  description = "metrics.listener (host:port of /metrics)."
  type        = string
  default     = "127.0.0.1:9644"
}

variable "extra_broker_config" {
  description = "More broker keys (written after the module's own; the caller keeps them from overriding those)."
  type        = map(string)
  default     = {}
}

variable "security_groups_file" {
  description = "Path of the security-groups JSON, copied byte for byte to /etc/strata/security-groups.json."
  type        = string
}

variable "strata_binary_url" {
  description = "s3://... or https://... URL of the strata binary."
  type        = string
}

variable "strata_binary_sha256" {
  description = "SHA-256 the binary must have."
  type        = string
}

variable "cluster_id" {
  description = "Cluster id for `strata storage format --cluster-id` (the same on every broker)."
  type        = string
}

variable "scram_admin_secret_arn" {
  description = "Secrets Manager secret holding the first SCRAM user's password, or null."
  type        = string
  default     = null
}

variable "scram_admin_username" {
  description = "The first SCRAM user's name."
  type        = string
  default     = "admin"
}
