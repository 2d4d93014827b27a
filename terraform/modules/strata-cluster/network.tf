# The network: an existing VPC and three subnets (vpc_id, subnet_ids), or a new VPC
# with three private subnets and no route to the internet. Brokers in a new VPC reach
# S3 (the tier, the binary, Amazon Linux's package repositories) through a gateway
# endpoint, and Secrets Manager / SSM through interface endpoints, so nothing needs a
# NAT gateway or a public address.

locals {
  create_vpc = var.vpc_id == null
  vpc_id     = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id

  az_ids = local.create_vpc ? (
    var.availability_zone_ids != null ? var.availability_zone_ids : slice(data.aws_availability_zones.available[0].zone_ids, 0, 3)
  ) : []

  # One entry per subnet, in the order brokers are placed (broker i in subnet i % 3).
  subnets = local.create_vpc ? [
    for s in aws_subnet.private : {
      id    = s.id
      cidr  = s.cidr_block
      az    = s.availability_zone
      az_id = s.availability_zone_id
    }
    ] : [
    for id in var.subnet_ids : {
      id    = id
      cidr  = data.aws_subnet.given[id].cidr_block
      az    = data.aws_subnet.given[id].availability_zone
      az_id = data.aws_subnet.given[id].availability_zone_id
    }
  ]

  interface_endpoints = toset(concat(
    length(local.secret_arns) > 0 ? ["secretsmanager"] : [],
    var.session_manager_enabled ? ["ssm", "ssmmessages", "ec2messages"] : [],
  ))
  flow_log_group_name = "/strata/${var.name}/vpc-flow-logs"
}

data "aws_availability_zones" "available" {
  count = local.create_vpc && var.availability_zone_ids == null ? 1 : 0
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_subnet" "given" {
  for_each = toset(local.create_vpc ? [] : var.subnet_ids)
  id       = each.value

  lifecycle {
    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "Subnet ${self.id} is not in ${var.vpc_id}."
    }
    postcondition {
      condition     = !self.map_public_ip_on_launch
      error_message = "Subnet ${self.id} gives instances public addresses; the brokers belong in private subnets."
    }
  }
}

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  cidr_block = var.vpc_cidr
  # DNS support and hostnames: interface endpoints' private DNS names need both.
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = var.name })
}

# The VPC's default security group, emptied: nothing should rely on it.
resource "aws_default_security_group" "this" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_subnet" "private" {
  count = local.create_vpc ? 3 : 0

  vpc_id                  = aws_vpc.this[0].id
  cidr_block              = var.private_subnet_cidrs[count.index]
  availability_zone_id    = local.az_ids[count.index]
  map_public_ip_on_launch = false

  tags = merge(local.tags, { Name = "${var.name}-private-${local.az_ids[count.index]}" })
}

# One route table per subnet with only the local route and the S3 endpoint: private.
resource "aws_route_table" "private" {
  count  = local.create_vpc ? 3 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-private-${local.az_ids[count.index]}" })
}

resource "aws_route_table_association" "private" {
  count          = local.create_vpc ? 3 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# S3 without a NAT: the tier, the binary and the AL2023 package repositories (which
# are S3 buckets). Its policy stays the default (full access) because the repository
# buckets belong to AWS; what the brokers may do in S3 is bounded by their role.
resource "aws_vpc_endpoint" "s3" {
  count = local.create_vpc ? 1 : 0

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id

  tags = merge(local.tags, { Name = "${var.name}-s3" })
}

resource "aws_security_group" "endpoints" {
  count = local.create_vpc && length(local.interface_endpoints) > 0 ? 1 : 0

  name_prefix = "${var.name}-endpoints-"
  description = "HTTPS from the VPC to the interface endpoints of Strata cluster ${var.name}"
  vpc_id      = aws_vpc.this[0].id
  tags        = merge(local.tags, { Name = "${var.name}-endpoints" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  count = local.create_vpc && length(local.interface_endpoints) > 0 ? 1 : 0

  security_group_id = aws_security_group.endpoints[0].id
  description       = "HTTPS from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = aws_vpc.this[0].cidr_block
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.create_vpc ? local.interface_endpoints : toset([])

  vpc_id              = aws_vpc.this[0].id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

# ---- VPC flow logs ----------------------------------------------------------------
# Every accepted and rejected connection, so a denial by a security group shows up on
# the AWS side as the broker's own strata_security_group_denied_total does on its side.

resource "aws_cloudwatch_log_group" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  name              = local.flow_log_group_name
  retention_in_days = var.flow_logs_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    # Only for flow logs of this account (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.flow_log_group_name}",
      "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.flow_log_group_name}:*",
    ]
  }
}

resource "aws_iam_role" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  name_prefix        = "${var.name}-flow-logs-"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "flow_logs" {
  count = local.create_vpc ? 1 : 0

  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs[0].id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id          = aws_vpc.this[0].id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow_logs[0].arn
  iam_role_arn    = aws_iam_role.flow_logs[0].arn
  tags            = merge(local.tags, { Name = var.name })
}
