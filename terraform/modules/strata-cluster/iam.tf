# The brokers' instance role. Least privilege: the tier prefix of one bucket, the
# cluster's KMS key only through S3, the binary object, the two secrets if any, and
# write-only access to the log-delivery prefix if log delivery is on.
# No ec2:*, no iam:*, nothing account-wide.

data "aws_iam_policy_document" "broker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.${local.dns_suffix}"]
    }
  }
}

data "aws_iam_policy_document" "broker" {
  # Listing is limited to the tier prefix (the broker lists a partition's segments
  # under PREFIX/ when it rebuilds its view of the tier).
  statement {
    sid       = "ListTierPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.tier.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.object_prefix, "${var.object_prefix}/*"]
    }
  }

  # Segments and their indexes: uploaded (multipart for large ones), read, deleted by
  # retention.
  statement {
    sid = "TierObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.tier.arn}/${var.object_prefix}/*"]
  }

  # SSE-KMS: S3 calls KMS on the writer's and reader's behalf, so the brokers need the
  # key, but only through S3 in this region (kms:ViaService): the role cannot use the
  # key directly.
  statement {
    sid       = "TierKeyThroughS3"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }

  # Broker log delivery (log_delivery_prefix): write-only, under its own prefix.
  dynamic "statement" {
    for_each = var.log_delivery_prefix == null ? [] : [var.log_delivery_prefix]
    content {
      sid       = "BrokerLogDelivery"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.tier.arn}/${statement.value}/*"]
    }
  }

  dynamic "statement" {
    for_each = local.binary_s3 == null ? [] : [local.binary_s3]
    content {
      sid       = "StrataBinary"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::${statement.value[0]}/${statement.value[1]}"]
    }
  }

  dynamic "statement" {
    for_each = length(local.secret_arns) == 0 ? [] : [local.secret_arns]
    content {
      sid       = "BrokerSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn == null ? [] : [var.secrets_kms_key_arn]
    content {
      sid       = "SecretsKeyThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

resource "aws_iam_role" "broker" {
  name_prefix        = "${var.name}-broker-"
  description        = "Strata brokers of ${var.name}: tier bucket prefix, its KMS key via S3, the binary and the broker secrets"
  assume_role_policy = data.aws_iam_policy_document.broker_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "broker" {
  name   = "strata-broker"
  role   = aws_iam_role.broker.id
  policy = data.aws_iam_policy_document.broker.json
}

# Session Manager instead of SSH: no key pair, no port 22.
resource "aws_iam_role_policy_attachment" "session_manager" {
  count      = var.session_manager_enabled ? 1 : 0
  role       = aws_iam_role.broker.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "broker" {
  name_prefix = "${var.name}-broker-"
  role        = aws_iam_role.broker.name
  tags        = local.tags
}
