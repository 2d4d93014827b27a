# Bootstrap strings named as `aws kafka get-bootstrap-brokers` names them, so scripts
# written for MSK read them unchanged. Empty when that listener is off.

locals {
  bootstrap = {
    for l in ["PLAINTEXT", "SSL", "SASL_SSL"] : l => contains(keys(local.listener_ports), l) ? join(",", [
      for k in local.node_ids : "${local.broker_hosts[k]}:${local.listener_ports[l]}"
    ]) : ""
  }
}

output "bootstrap_brokers" {
  description = "PLAINTEXT bootstrap string (host:9092,...); empty unless client_broker_encryption allows plaintext."
  value       = local.bootstrap.PLAINTEXT
}

output "bootstrap_brokers_tls" {
  description = "TLS bootstrap string (host:9094,...); empty when client_broker_encryption is PLAINTEXT."
  value       = local.bootstrap.SSL
}

output "bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM (SASL_SSL, SCRAM-SHA-512) bootstrap string (host:9096,...); empty unless sasl_scram_enabled."
  value       = local.bootstrap.SASL_SSL
}

output "cluster_id" {
  description = "The cluster id every broker was formatted with (strata cluster / kafka-metadata-quorum show it)."
  value       = local.cluster_id
}

output "bucket_name" {
  description = "The tier bucket."
  value       = aws_s3_bucket.tier.id
}

output "bucket_arn" {
  description = "ARN of the tier bucket."
  value       = aws_s3_bucket.tier.arn
}

output "object_store_url" {
  description = "object_store.url of the brokers (s3://BUCKET/PREFIX)."
  value       = "s3://${aws_s3_bucket.tier.id}/${var.object_prefix}"
}

output "kms_key_arn" {
  description = "The KMS key encrypting the tier, the EBS volumes and the flow logs (created or given)."
  value       = local.kms_key_arn
}

output "security_group_ids" {
  description = "Security group ids by group name of the security-groups file (attach e.g. the clients' group to your application instances when a rule names it as source_group)."
  value       = { for g, sg in aws_security_group.file : g => sg.id }
}

output "node_security_group_id" {
  description = "The module's own group on every broker (all outbound, metrics)."
  value       = aws_security_group.node.id
}

output "security_group_rules" {
  description = "The rendered ingress rules (what the brokers admit, port by port), for review."
  value       = module.security_group_rules.rules
}

output "broker_private_ips" {
  description = "Private address of each broker, by node id."
  value       = { for k in local.node_ids : k => local.brokers[k].private_ip }
}

output "broker_hosts" {
  description = "Advertised host of each broker (b-N.<zone> or the address), by node id."
  value       = { for k in local.node_ids : k => local.broker_hosts[k] }
}

output "broker_racks" {
  description = "broker.rack (availability zone id) of each broker, by node id."
  value       = { for k in local.node_ids : k => local.brokers[k].subnet.az_id }
}

output "instance_ids" {
  description = "EC2 instance id of each broker, by node id (for aws ssm start-session --target)."
  value       = { for k in local.node_ids : k => aws_instance.broker[k].id }
}

output "controller_quorum_voters" {
  description = "controller.quorum.voters of every broker."
  value       = local.quorum_voters
}

output "tls_subject_alt_names" {
  description = "Names the keystore certificate must carry (subjectAltName): every advertised host and, for the controller quorum's TLS, every broker address. Known at plan time: create the certificate from `terraform plan` output before the first apply."
  value = distinct(concat(
    [for k in local.node_ids : local.broker_hosts[k]],
    [for k in local.node_ids : local.brokers[k].private_ip],
  ))
}

output "iam_role_arn" {
  description = "The brokers' instance role (grant it kms:Decrypt in the key policy of a key you passed in, if that policy does not delegate to IAM)."
  value       = aws_iam_role.broker.arn
}

output "vpc_id" {
  description = "The VPC of the cluster."
  value       = local.vpc_id
}

output "subnet_ids" {
  description = "The three subnets of the brokers, in placement order."
  value       = [for s in local.subnets : s.id]
}

output "s3_vpc_endpoint_id" {
  description = "The S3 gateway endpoint of a VPC the module created (null with vpc_id): associate your own private route tables with it to reach S3 without a NAT."
  value       = local.create_vpc ? aws_vpc_endpoint.s3[0].id : null
}

output "availability_zone_ids" {
  description = "Availability zone ids of the three subnets, in placement order (broker N is in zone (N - 1) % 3)."
  value       = [for s in local.subnets : s.az_id]
}

output "broker_config" {
  description = "The /etc/strata/strata.toml of each broker, by node id."
  value       = module.broker_config.toml
}
