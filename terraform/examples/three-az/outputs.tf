output "bootstrap_brokers" {
  description = "PLAINTEXT (9092) bootstrap string."
  value       = module.strata.bootstrap_brokers
}

output "bootstrap_brokers_tls" {
  description = "TLS (9094) bootstrap string."
  value       = module.strata.bootstrap_brokers_tls
}

output "bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM-SHA-512 over TLS (9096) bootstrap string."
  value       = module.strata.bootstrap_brokers_sasl_scram
}

output "cluster_id" {
  description = "The cluster id."
  value       = module.strata.cluster_id
}

output "bucket_name" {
  description = "The tier bucket."
  value       = module.strata.bucket_name
}

output "kms_key_arn" {
  description = "The KMS key of the tier and the volumes."
  value       = module.strata.kms_key_arn
}

output "security_group_ids" {
  description = "Security groups by name in security-groups.json."
  value       = module.strata.security_group_ids
}

output "instance_ids" {
  description = "Broker instances by node id (aws ssm start-session --target ...)."
  value       = module.strata.instance_ids
}

output "broker_private_ips" {
  description = "Broker addresses by node id."
  value       = module.strata.broker_private_ips
}

output "tls_subject_alt_names" {
  description = "Names the broker certificate must carry."
  value       = module.strata.tls_subject_alt_names
}

output "app_subnet_ids" {
  description = "Subnets for the applications (admitted by the clients group)."
  value       = aws_subnet.apps[*].id
}

output "client_instance_id" {
  description = "The client instance (aws ssm start-session --target ...), if enabled."
  value       = var.client_instance_enabled ? aws_instance.client[0].id : null
}
