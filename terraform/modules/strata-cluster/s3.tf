# The tier: sealed segments are uploaded under s3://BUCKET/PREFIX/ and read back by
# any broker (remote.log.storage.system.enable=true, object_store.url).

resource "aws_s3_bucket" "tier" {
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice (and a second bill) left to the operator; the tier is already 11-nines durable within the region
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the tier bucket; the brokers keep their own index of uploaded segments in the metadata quorum
  #checkov:skip=CKV_AWS_18:server access logs need a separate log bucket owned by the account's logging setup; use CloudTrail S3 data events on this bucket instead (the README shows how)
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-tier-" : null
  force_destroy = var.bucket_force_destroy

  tags = merge(local.tags, { Name = "${var.name}-tier" })
}

resource "aws_s3_bucket_public_access_block" "tier" {
  bucket = aws_s3_bucket.tier.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: the bucket owner owns every object, access is by policy only.
resource "aws_s3_bucket_ownership_controls" "tier" {
  bucket = aws_s3_bucket.tier.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "tier" {
  bucket = aws_s3_bucket.tier.id

  versioning_configuration {
    # A bucket that was never versioned can only be "Suspended", not "Disabled",
    # once this resource manages it.
    status = var.bucket_versioning_enabled ? "Enabled" : "Suspended"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "tier" {
  bucket = aws_s3_bucket.tier.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    # The brokers also ask for it on every write (object_store.sse.bucket.key.enabled).
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "tier" {
  bucket = aws_s3_bucket.tier.id

  # A broker that dies mid-upload leaves parts nobody completes; they cost storage
  # until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # Retention deletes segments; with versioning they linger as noncurrent versions.
  rule {
    id     = "expire-noncurrent-versions"
    status = var.bucket_versioning_enabled ? "Enabled" : "Disabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # Versioning must be in place before rules about noncurrent versions.
  depends_on = [aws_s3_bucket_versioning.tier]
}

data "aws_iam_policy_document" "tier_bucket" {
  # HTTPS only.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.tier.arn, "${aws_s3_bucket.tier.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # A writer that asks for another encryption than SSE-KMS, or for another key, is
  # refused. "IfExists" because UploadPart (also s3:PutObject) carries no encryption
  # header: the multipart upload's encryption is set once, when it is created.
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.tier.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKmsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.tier.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [local.kms_key_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "tier" {
  bucket = aws_s3_bucket.tier.id
  policy = data.aws_iam_policy_document.tier_bucket.json

  # A bucket policy is public-checked against the access block; set the block first.
  depends_on = [aws_s3_bucket_public_access_block.tier]
}
