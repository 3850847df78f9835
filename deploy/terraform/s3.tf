# The two buckets. Objects are created once and never overwritten or
# deleted by the pipeline; versioning keeps them safe from anyone else.

resource "aws_s3_bucket" "ingestion" {
  bucket        = "${var.name_prefix}-ingestion-${local.account_id}-${var.aws_region}"
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket" "processed" {
  bucket        = "${var.name_prefix}-processed-${local.account_id}-${var.aws_region}"
  force_destroy = var.force_destroy_buckets
}

locals {
  buckets = {
    ingestion = aws_s3_bucket.ingestion
    processed = aws_s3_bucket.processed
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets

  bucket = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-S3 (AES256): no KMS key to pay for or grant to the functions.
resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Large Parquet objects go up in parts; parts of an upload that a crash left
# unfinished are never part of a batch, so S3 drops them after a week.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = local.buckets

  bucket = each.value.id
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# Refuse plain-HTTP access to either bucket.
data "aws_iam_policy_document" "bucket_tls_only" {
  for_each = local.buckets

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
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
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket_tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
