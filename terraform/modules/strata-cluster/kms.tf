# Encryption at rest (MSK: "Encryption at rest: customer managed key").
#
# One customer-managed key encrypts the tier bucket (SSE-KMS with an S3 Bucket Key,
# which caches a bucket-level data key so S3 calls KMS rarely), the root and EBS data
# volumes, and the flow logs. Pass kms_key_arn to use a key of your own instead.
#
# The NVMe instance store holding the partition logs needs no key: on Nitro instances
# it is encrypted by the hardware with AES-256 (XTS), with keys generated on the
# instance, never leaving it, and destroyed when the instance stops or terminates.

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == null ? 1 : 0

  # The account administers the key and its IAM policies decide who uses it (the
  # broker role gets only Encrypt/Decrypt/GenerateDataKey/DescribeKey, through S3).
  # In a key policy "Resource: *" means this key.
  statement {
    sid       = "AccountAdministersAndDelegatesToIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the flow-log group with the key, for that group only.
  statement {
    sid       = "CloudWatchLogsForTheFlowLogGroup"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.flow_log_group_name}"]
    }
  }
}

resource "aws_kms_key" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "Strata cluster ${var.name}: tier bucket (SSE-KMS), EBS volumes, flow logs"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = merge(local.tags, { Name = "${var.name}-strata" })
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-strata"
  target_key_id = aws_kms_key.this[0].key_id
}
