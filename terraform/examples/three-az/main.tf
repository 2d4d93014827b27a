# A three-AZ Strata cluster laid out as an MSK cluster: three brokers on i4i.large,
# one per zone, TLS (9094) and SASL/SCRAM (9096) for clients, plaintext (9092) kept
# for the first steps, TLS between brokers, the tier in S3 under a KMS key the module
# creates, and application subnets admitted by security-groups.json.

module "strata" {
  source = "../../modules/strata-cluster"

  name          = var.name
  instance_type = var.instance_type
  broker_count  = var.broker_count

  # The module creates the VPC (10.0.0.0/16) and three private broker subnets; the
  # brokers group of security-groups.json names those same CIDRs.
  private_subnet_cidrs  = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
  private_dns_zone_name = "strata.internal"

  strata_binary_url    = var.strata_binary_url
  strata_binary_sha256 = var.strata_binary_sha256

  security_groups_file = "${path.module}/security-groups.json"

  client_broker_encryption = "TLS_PLAINTEXT"
  in_cluster_encryption    = true
  sasl_scram_enabled       = true
  tls_keystore_secret_arn  = var.tls_keystore_secret_arn
  tls_truststore_pem       = file(var.tls_truststore_pem_file)
  scram_admin_secret_arn   = var.scram_admin_secret_arn

  metrics_allowed_cidrs = var.metrics_allowed_cidrs

  # MSK's "Broker log delivery" to S3 (null: the journal only).
  log_delivery_prefix = var.log_delivery_prefix

  # e.g. { "auto.create.topics.enable" = "false" } as MSK's default configuration.
  extra_broker_config = var.extra_broker_config
}

# Where the applications run: private subnets in the cluster's VPC, in the brokers'
# zones, reaching the brokers through the VPC's local route.
resource "aws_subnet" "apps" {
  count = length(var.app_subnet_cidrs)

  vpc_id                  = module.strata.vpc_id
  cidr_block              = var.app_subnet_cidrs[count.index]
  availability_zone_id    = module.strata.availability_zone_ids[count.index % 3]
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-apps-${count.index + 1}" }
}

# The app subnets reach S3 (artifacts, the binary) through the module's gateway
# endpoint; like the brokers' subnets they have no route to the internet.
resource "aws_route_table" "apps" {
  vpc_id = module.strata.vpc_id
  tags   = { Name = "${var.name}-apps" }
}

resource "aws_route_table_association" "apps" {
  count          = length(aws_subnet.apps)
  subnet_id      = aws_subnet.apps[count.index].id
  route_table_id = aws_route_table.apps.id
}

resource "aws_vpc_endpoint_route_table_association" "apps_s3" {
  vpc_endpoint_id = module.strata.s3_vpc_endpoint_id
  route_table_id  = aws_route_table.apps.id
}
