# A client to try the cluster from an address the clients group admits (MSK's getting
# started does the same): Amazon Linux 2023 in the first app subnet, reached with
# Session Manager (no SSH, no public address), allowed to read the strata binary from
# S3 so that `strata cluster` can show the brokers and the quorum.

locals {
  binary_s3 = regex("^s3://([^/]+)/(.+)$", var.strata_binary_url)
}

data "aws_ssm_parameter" "client_ami" {
  count = var.client_instance_enabled ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

data "aws_iam_policy_document" "client_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "client" {
  statement {
    sid       = "StrataBinary"
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::${local.binary_s3[0]}/${local.binary_s3[1]}"]
  }
}

resource "aws_iam_role" "client" {
  count              = var.client_instance_enabled ? 1 : 0
  name_prefix        = "${var.name}-client-"
  assume_role_policy = data.aws_iam_policy_document.client_assume.json
}

resource "aws_iam_role_policy" "client" {
  count  = var.client_instance_enabled ? 1 : 0
  name   = "read-strata-binary"
  role   = aws_iam_role.client[0].id
  policy = data.aws_iam_policy_document.client.json
}

resource "aws_iam_role_policy_attachment" "client_ssm" {
  count      = var.client_instance_enabled ? 1 : 0
  role       = aws_iam_role.client[0].name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "client" {
  count       = var.client_instance_enabled ? 1 : 0
  name_prefix = "${var.name}-client-"
  role        = aws_iam_role.client[0].name
}

# Outbound only: the client opens connections to the brokers, S3 and the endpoints.
resource "aws_security_group" "client" {
  count       = var.client_instance_enabled ? 1 : 0
  name_prefix = "${var.name}-client-"
  description = "Strata demo client: outbound only"
  vpc_id      = module.strata.vpc_id
  tags        = { Name = "${var.name}-client" }
}

resource "aws_vpc_security_group_egress_rule" "client" {
  #checkov:skip=CKV_AWS_382:the client reaches the brokers on several ports, S3 and the VPC endpoints; it accepts no inbound connection
  count             = var.client_instance_enabled ? 1 : 0
  security_group_id = aws_security_group.client[0].id
  description       = "All outbound"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "client" {
  count = var.client_instance_enabled ? 1 : 0

  ami                    = data.aws_ssm_parameter.client_ami[0].insecure_value
  instance_type          = var.client_instance_type
  subnet_id              = aws_subnet.apps[0].id
  vpc_security_group_ids = [aws_security_group.client[0].id]
  iam_instance_profile   = aws_iam_instance_profile.client[0].name
  ebs_optimized          = true
  monitoring             = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    volume_type = "gp3"
    encrypted   = true
    kms_key_id  = module.strata.kms_key_arn
  }

  tags = { Name = "${var.name}-client" }

  lifecycle {
    ignore_changes = [ami]
  }
}
