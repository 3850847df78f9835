# The two buckets. Objects are created once and never overwritten or
# deleted: the stages write with If-None-Match: * (internal/contract/lake), and the
# buckets' policy refuses any other write and any delete (docs/deploy.md,
# "Write-once"). Versioning keeps every version should someone lift that
# policy.
#
# Each bucket's public access block, ownership, versioning and encryption is
# its own resource, written out per bucket, so that a reader (and a scanner
# such as tfsec) sees at once which bucket has what.

#tfsec:ignore:aws-s3-enable-bucket-logging Server access logs need a third bucket and are best-effort; the stages log every object they write, and CloudTrail data events are the way to audit access if required.
resource "aws_s3_bucket" "ingestion" {
  bucket        = "${var.name_prefix}-ingestion-${local.account_id}-${var.aws_region}"
  force_destroy = var.force_destroy_buckets
}

#tfsec:ignore:aws-s3-enable-bucket-logging Server access logs need a third bucket and are best-effort; the stages log every object they write, and CloudTrail data events are the way to audit access if required.
resource "aws_s3_bucket" "processed" {
  bucket        = "${var.name_prefix}-processed-${local.account_id}-${var.aws_region}"
  force_destroy = var.force_destroy_buckets
}

locals {
  # The buckets by name, for what is the same for both (lifecycle, policy).
  buckets = {
    ingestion = aws_s3_bucket.ingestion
    processed = aws_s3_bucket.processed
  }
}

resource "aws_s3_bucket_public_access_block" "ingestion" {
  bucket                  = aws_s3_bucket.ingestion.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_public_access_block" "processed" {
  bucket                  = aws_s3_bucket.processed.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "ingestion" {
  bucket = aws_s3_bucket.ingestion.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_ownership_controls" "processed" {
  bucket = aws_s3_bucket.processed.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "ingestion" {
  bucket = aws_s3_bucket.ingestion.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_versioning" "processed" {
  bucket = aws_s3_bucket.processed.id
  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-S3 (AES256): no KMS key to pay for or grant to the functions, and
# nothing in these buckets is more secret than the databases they copy.
#tfsec:ignore:aws-s3-encryption-customer-key SSE-S3 by choice: a customer managed key costs a key and a grant per function and adds no protection against a principal that may already read the bucket.
resource "aws_s3_bucket_server_side_encryption_configuration" "ingestion" {
  bucket = aws_s3_bucket.ingestion.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

#tfsec:ignore:aws-s3-encryption-customer-key SSE-S3 by choice: a customer managed key costs a key and a grant per function and adds no protection against a principal that may already read the bucket.
resource "aws_s3_bucket_server_side_encryption_configuration" "processed" {
  bucket = aws_s3_bucket.processed.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# The same settings were once made with for_each over local.buckets.
moved {
  from = aws_s3_bucket_public_access_block.this["ingestion"]
  to   = aws_s3_bucket_public_access_block.ingestion
}
moved {
  from = aws_s3_bucket_public_access_block.this["processed"]
  to   = aws_s3_bucket_public_access_block.processed
}
moved {
  from = aws_s3_bucket_ownership_controls.this["ingestion"]
  to   = aws_s3_bucket_ownership_controls.ingestion
}
moved {
  from = aws_s3_bucket_ownership_controls.this["processed"]
  to   = aws_s3_bucket_ownership_controls.processed
}
moved {
  from = aws_s3_bucket_versioning.this["ingestion"]
  to   = aws_s3_bucket_versioning.ingestion
}
moved {
  from = aws_s3_bucket_versioning.this["processed"]
  to   = aws_s3_bucket_versioning.processed
}
moved {
  from = aws_s3_bucket_server_side_encryption_configuration.this["ingestion"]
  to   = aws_s3_bucket_server_side_encryption_configuration.ingestion
}
moved {
  from = aws_s3_bucket_server_side_encryption_configuration.this["processed"]
  to   = aws_s3_bucket_server_side_encryption_configuration.processed
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

  depends_on = [aws_s3_bucket_versioning.ingestion, aws_s3_bucket_versioning.processed]
}

# Each bucket's policy, for every principal (administrators included):
#   - no plain HTTP;
#   - write-once: a request that creates an object (PutObject, CopyObject,
#     CompleteMultipartUpload: s3:ObjectCreationOperation true) must carry
#     If-None-Match, so it can never replace an object. The parts of a
#     multipart upload (CreateMultipartUpload, UploadPart) cannot carry the
#     header, and create nothing until the completion, which must;
#   - no deletes: neither of an object (a delete marker would hide it from
#     the stages) nor of a version. Only force_destroy_buckets = true, set
#     to tear down, lifts this rule, so that the buckets can be emptied.
# No key is rewritten by the pipeline (every state, manifest, data and
# report key is new: internal/contract/lake), so no prefix is exempt.
data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  source_policy_documents = var.force_destroy_buckets ? [] : [data.aws_iam_policy_document.bucket_no_deletes[each.key].json]

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
  statement {
    sid       = "DenyWritesWithoutIfNoneMatch"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
  }
}

data "aws_iam_policy_document" "bucket_no_deletes" {
  for_each = local.buckets

  statement {
    sid       = "DenyDeletes"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = ["${each.value.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.ingestion, aws_s3_bucket_public_access_block.processed]
}
