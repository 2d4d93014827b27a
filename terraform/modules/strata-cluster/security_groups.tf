# Security groups rendered from the file the brokers enforce (security_groups_file).
#
# Each group of the file becomes an aws_security_group; each of its ingress rules,
# its port range intersected with the ports of the listeners the group is attached
# to, becomes one aws_vpc_security_group_ingress_rule per contiguous run of those
# ports (the rendering lives in ../security-group-rules, which has no provider so the
# test suite can check it offline against `strata security-groups check`). Every
# group attached to a listener is attached to the brokers' network interfaces, so the
# AWS rules admit, port by port, exactly what the brokers admit: the two layers cannot
# drift because they read one file.
#
# The groups carry no egress rule; the module's node group below does.

module "security_group_rules" {
  source = "../security-group-rules"

  security_groups_file = var.security_groups_file
  listeners            = local.listener_ports
  expand_source_groups = var.source_group_rules == "members"
}

locals {
  # AWS group names allow a limited character set; the file's names are free-form.
  sg_name_chars = "/[^A-Za-z0-9. _:/()#,@\\[\\]+=&;{}!$*-]/"
}

resource "aws_security_group" "file" {
  for_each = module.security_group_rules.groups

  name_prefix = "${var.name}-${replace(each.key, local.sg_name_chars, "")}-"
  description = each.value.aws_description
  vpc_id      = local.vpc_id

  tags = merge(local.tags, {
    Name                    = "${var.name}-${each.key}"
    "strata:security-group" = each.key
    "strata:listeners"      = join(" ", each.value.listeners)
  })

  # A changed description replaces the group; create the new one first so the
  # brokers' interfaces can move to it.
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "file" {
  for_each = { for r in module.security_group_rules.rules : r.key => r }

  security_group_id = aws_security_group.file[each.value.group].id
  description       = each.value.aws_description
  ip_protocol       = "tcp"
  from_port         = each.value.from_port
  to_port           = each.value.to_port

  cidr_ipv4                    = each.value.cidr_ipv4
  cidr_ipv6                    = each.value.cidr_ipv6
  referenced_security_group_id = each.value.cidr_ipv4 == null && each.value.cidr_ipv6 == null ? aws_security_group.file[each.value.source_group].id : null

  tags = merge(local.tags, { "strata:rule" = "${each.value.group} ingress rule ${each.value.rule}" })
}

# The module's own group on every broker: outbound traffic and, optionally, metrics.
resource "aws_security_group" "node" {
  name_prefix = "${var.name}-broker-node-"
  description = "Strata brokers of ${var.name}: outbound traffic and the metrics endpoint"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-broker-node" })

  lifecycle {
    create_before_destroy = true
  }
}

# All outbound. The brokers open connections to: S3 (the tier and the binary; through
# the gateway endpoint, whose addresses are S3's public ranges), Secrets Manager and
# SSM (interface endpoints in the VPC, or public endpoints through a NAT), the other
# brokers' REPLICATION and CONTROLLER listeners, and the AL2023 package repositories.
# KMS is called by S3 on the brokers' behalf, not by the brokers. Narrow this to
# those destinations (the S3 prefix list, the VPC CIDR) if your policy requires it.
resource "aws_vpc_security_group_egress_rule" "node_all_ipv4" {
  #checkov:skip=CKV_AWS_382:brokers must reach S3 (public prefix ranges via the gateway endpoint), Secrets Manager/SSM and their peers; see the comment above for how to narrow it
  security_group_id = aws_security_group.node.id
  description       = "All outbound IPv4: S3, Secrets Manager, SSM, peer brokers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# /metrics is not a Kafka listener, so the broker's security groups do not guard it;
# this rule does (only when metrics_allowed_cidrs is set: otherwise it binds 127.0.0.1).
resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = toset(var.metrics_allowed_cidrs)

  security_group_id = aws_security_group.node.id
  description       = "Prometheus scrape of /metrics"
  ip_protocol       = "tcp"
  from_port         = var.metrics_port
  to_port           = var.metrics_port
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}
