# A Strata cluster on EC2 in the shape of an Amazon MSK cluster: brokers spread one per
# availability zone in private subnets, the tier in S3 under a customer-managed KMS
# key, security groups rendered from the very file the brokers enforce.
#
#   main.tf             shared data sources and locals
#   network.tf          VPC, subnets, endpoints, flow logs (or an existing VPC)
#   security_groups.tf  the security-groups file as AWS security groups
#   kms.tf, s3.tf       encryption at rest and the tier bucket
#   iam.tf              the brokers' instance role (least privilege)
#   brokers.tf          network interfaces, data volumes, instances; their config
#                       and user data come from ../broker-config
#   dns.tf              optional private hosted zone with b-N names
#   outputs.tf          bootstrap strings as MSK names them, ids, addresses

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_ec2_instance_type" "broker" {
  instance_type = var.instance_type
}

# Latest Amazon Linux 2023 for the instance type's CPU (Graviton types are arm64).
data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${local.architecture}"
}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix

  architecture = contains(data.aws_ec2_instance_type.broker.supported_architectures, "arm64") ? "arm64" : "x86_64"
  ami_id       = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023[0].insecure_value

  tags = merge(var.tags, { "strata:cluster" = var.name })

  # ---- listeners ------------------------------------------------------------------
  # MSK's client listeners (9092 PLAINTEXT, 9094 TLS, 9096 SASL/SCRAM) plus the two
  # the brokers use between themselves. A listener that is off is not in `listeners`
  # at all, so the security-groups file must not attach groups to it (the broker
  # would refuse the file; the security-group-rules module refuses it at plan time).
  listener_enabled = {
    PLAINTEXT   = var.client_broker_encryption != "TLS"
    SSL         = var.client_broker_encryption != "PLAINTEXT"
    SASL_SSL    = var.sasl_scram_enabled
    REPLICATION = true
    CONTROLLER  = true
  }
  all_listener_ports = {
    PLAINTEXT   = var.listener_ports.plaintext
    SSL         = var.listener_ports.tls
    SASL_SSL    = var.listener_ports.sasl_scram
    REPLICATION = var.listener_ports.replication
    CONTROLLER  = var.listener_ports.controller
  }
  listener_ports = { for l, p in local.all_listener_ports : l => p if local.listener_enabled[l] }
  listener_protocols = {
    PLAINTEXT   = "PLAINTEXT"
    SSL         = "SSL"
    SASL_SSL    = "SASL_SSL"
    REPLICATION = var.in_cluster_encryption ? "SSL" : "PLAINTEXT"
    CONTROLLER  = var.in_cluster_encryption ? "SSL" : "PLAINTEXT"
  }

  # ---- the tier -------------------------------------------------------------------
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn

  # A stable cluster id for `strata storage format --cluster-id` (the same on every
  # broker, as Kafka requires): 22 URL-safe base64 characters like Kafka's, derived
  # from the cluster's name and account so that a replaced broker formats with it too.
  cluster_id = replace(replace(substr(base64sha256("strata:${local.account_id}:${local.region}:${var.name}"), 0, 22), "+", "-"), "/", "_")

  # s3://bucket/key of the binary, when it comes from S3 (for the IAM policy).
  binary_s3 = try(regex("^s3://([^/]+)/(.+)$", var.strata_binary_url), null)

  secret_arns = compact([var.tls_keystore_secret_arn, var.scram_admin_secret_arn])
}
