variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Cluster name (prefix of every resource)."
  type        = string
  default     = "strata-demo"
}

variable "instance_type" {
  description = "Broker instance type (NVMe instance store). is4gen.medium / i4g.large are Graviton: build the binary for aarch64 then."
  type        = string
  default     = "i4i.large"
}

variable "broker_count" {
  description = "Brokers, one per availability zone in turn (odd: each is a metadata-quorum voter)."
  type        = number
  default     = 3
}

variable "strata_binary_url" {
  description = "s3://BUCKET/KEY of the strata binary built for the instance type's architecture (README: \"Build and publish the binary\"), in the cluster's region."
  type        = string

  validation {
    condition     = can(regex("^s3://[^/]+/.+$", var.strata_binary_url))
    error_message = "The example's VPC has no internet route: strata_binary_url must be s3://BUCKET/KEY."
  }
}

variable "strata_binary_sha256" {
  description = "sha256sum of that binary."
  type        = string
}

variable "tls_keystore_secret_arn" {
  description = "Secrets Manager secret with the brokers' PEM private key and certificate chain (README: \"Certificates\")."
  type        = string
}

variable "tls_truststore_pem_file" {
  description = "Path of the PEM file of the CA that signed the broker (and client) certificates."
  type        = string
}

variable "scram_admin_secret_arn" {
  description = "Secrets Manager secret with the password of the first SCRAM user, admin (letters and digits). null: create users later."
  type        = string
  default     = null
}

variable "app_subnet_cidrs" {
  description = "Subnets this example creates for the applications, one per zone. They must be the CIDRs of the \"clients\" group in security-groups.json: that file is what admits them, on the brokers and in AWS."
  type        = list(string)
  default     = ["10.0.10.0/24", "10.0.11.0/24", "10.0.12.0/24"]
}

variable "metrics_allowed_cidrs" {
  description = "Who may scrape the brokers' /metrics (Prometheus). Empty: metrics stay on 127.0.0.1."
  type        = list(string)
  default     = []
}

variable "log_delivery_prefix" {
  description = "Deliver broker logs to s3://<tier bucket>/<this prefix>/ (logs.delivery.url, in Strata builds that have it). null: journal only."
  type        = string
  default     = null
}

variable "extra_broker_config" {
  description = "More broker keys, e.g. { \"log.retention.hours\" = \"72\", \"auto.create.topics.enable\" = \"false\" } (see config/msk-like.toml and the broker README)."
  type        = map(string)
  default     = {}
}

variable "client_instance_enabled" {
  description = "Launch a small client instance (Amazon Linux 2023, Session Manager, no SSH) in the first app subnet, with read access to the binary's S3 object, to try the cluster from an admitted address."
  type        = bool
  default     = true
}

variable "client_instance_type" {
  description = "Instance type of the client instance."
  type        = string
  default     = "t3.small"
}
