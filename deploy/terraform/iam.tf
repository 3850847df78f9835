# Least privilege: each function's role may touch only its own buckets and
# key prefixes, its own secret, its own log group and the dead-letter queue.
# Nothing may delete an object. The policies are written out per stage, so
# a reviewer can read each one whole.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "stage" {
  for_each = local.stages

  name                 = "${local.function_names[each.key]}-function"
  path                 = local.role_path
  permissions_boundary = local.permissions_boundary_arn
  description          = "Execution role of ${local.function_names[each.key]}."
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "stage" {
  for_each = local.stages

  name   = "${local.function_names[each.key]}-least-privilege"
  role   = aws_iam_role.stage[each.key].id
  policy = local.stage_policies[each.key]
}

locals {
  stage_policies = {
    ingest    = data.aws_iam_policy_document.ingest.json
    transform = data.aws_iam_policy_document.transform.json
    load      = data.aws_iam_policy_document.load.json
    audit     = data.aws_iam_policy_document.audit.json
  }
}

# ingest: totesys (through the source secret) -> ingestion bucket.
data "aws_iam_policy_document" "ingest" {
  source_policy_documents = contains(local.vpc_stages, "ingest") ? [data.aws_iam_policy_document.vpc_access.json] : []

  statement {
    sid       = "ListIngestion"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.ingestion.arn]
  }
  statement {
    sid       = "ReadIngestion"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.ingestion.arn}/*"]
  }
  statement {
    sid       = "CreateIngestionObjects"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [for p in local.ingest_write_prefixes : "${aws_s3_bucket.ingestion.arn}/${p}*"]
  }
  statement {
    sid       = "ReadSourceSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.source.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.stage["ingest"].arn}:*"]
  }
  statement {
    sid       = "RecordFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

# transform: ingestion bucket -> processed bucket. No database at all.
data "aws_iam_policy_document" "transform" {
  statement {
    sid       = "ListBothBuckets"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.ingestion.arn, aws_s3_bucket.processed.arn]
  }
  statement {
    sid       = "ReadBothBuckets"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.ingestion.arn}/*", "${aws_s3_bucket.processed.arn}/*"]
  }
  statement {
    sid       = "CreateProcessedObjects"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [for p in local.transform_write_prefixes : "${aws_s3_bucket.processed.arn}/${p}*"]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.stage["transform"].arn}:*"]
  }
  statement {
    sid       = "RecordFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

# load: processed bucket -> warehouse (through the warehouse secret). Load
# keeps its progress in the warehouse, so it writes no object.
data "aws_iam_policy_document" "load" {
  source_policy_documents = contains(local.vpc_stages, "load") ? [data.aws_iam_policy_document.vpc_access.json] : []

  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.processed.arn]
  }
  statement {
    sid       = "ReadProcessed"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*"]
  }
  statement {
    sid       = "ReadWarehouseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.warehouse.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.stage["load"].arn}:*"]
  }
  statement {
    sid       = "RecordFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

# audit: totesys (through the source secret) and the ingestion bucket ->
# a report under audits/. Only with audit_repair may it create objects where
# ingest does (a repair batch); only with audit_warehouse_check may it read
# the processed bucket and the warehouse secret.
data "aws_iam_policy_document" "audit" {
  source_policy_documents = concat(
    var.audit_repair ? [data.aws_iam_policy_document.audit_repair.json] : [],
    var.audit_warehouse_check ? [data.aws_iam_policy_document.audit_warehouse.json] : [],
    contains(local.vpc_stages, "audit") ? [data.aws_iam_policy_document.vpc_access.json] : [],
  )

  statement {
    sid       = "ListIngestion"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.ingestion.arn]
  }
  statement {
    sid       = "ReadIngestion"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.ingestion.arn}/*"]
  }
  statement {
    sid       = "CreateAuditReports"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.ingestion.arn}/${local.audit_report_prefix}*"]
  }
  statement {
    sid       = "ReadSourceSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.source.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.stage["audit"].arn}:*"]
  }
  statement {
    sid       = "RecordFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

# vpc_access: in a VPC, Lambda creates and deletes the function's network
# interfaces with its execution role (as AWSLambdaVPCAccessExecutionRole
# grants). EC2 authorizes Describe on "*" only, and Lambda checks Create
# against "*" when the function is created, so these name no resource.
#tfsec:ignore:aws-iam-no-policy-wildcards EC2 takes "*" for these network-interface calls (Describe has no resource type); only functions in a VPC get them, and the boundary allows nothing else of EC2.
data "aws_iam_policy_document" "vpc_access" {
  statement {
    sid       = "ManageNetworkInterfacesInTheVpc"
    actions   = local.eni_actions
    resources = ["*"]
  }
}

# audit_repair: a repair lands a batch as ingest does.
data "aws_iam_policy_document" "audit_repair" {
  statement {
    sid       = "CreateRepairBatches"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [for p in local.ingest_write_prefixes : "${aws_s3_bucket.ingestion.arn}/${p}*"]
  }
}

# audit_warehouse_check: the warehouse against the processed bucket.
data "aws_iam_policy_document" "audit_warehouse" {
  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.processed.arn]
  }
  statement {
    sid       = "ReadProcessed"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.processed.arn}/*"]
  }
  statement {
    sid       = "ReadWarehouseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.warehouse.arn]
  }
}

# EventBridge Scheduler's own role for the pipeline's ticks: it may invoke
# ingest, transform and load (the sweeps), and nothing else.
data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name_prefix}-scheduler"
  path                 = local.role_path
  permissions_boundary = local.permissions_boundary_arn
  description          = "Lets EventBridge Scheduler start ${local.function_names["ingest"]}, ${local.function_names["transform"]} and ${local.function_names["load"]}."
  assume_role_policy   = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeTheTickedStages"
    actions   = ["lambda:InvokeFunction"]
    resources = [for s in local.ticked_stages : aws_lambda_function.stage[s].arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.name_prefix}-scheduler-invoke-ingest"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# The audit's schedule has a role of its own: it may invoke the audit and
# nothing else.
resource "aws_iam_role" "audit_scheduler" {
  count = local.audit_scheduled ? 1 : 0

  name                 = "${var.name_prefix}-audit-scheduler"
  path                 = local.role_path
  permissions_boundary = local.permissions_boundary_arn
  description          = "Lets EventBridge Scheduler start ${local.function_names["audit"]}."
  assume_role_policy   = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "audit_scheduler" {
  statement {
    sid       = "InvokeAudit"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.stage["audit"].arn]
  }
}

resource "aws_iam_role_policy" "audit_scheduler" {
  count = local.audit_scheduled ? 1 : 0

  name   = "${var.name_prefix}-audit-scheduler-invoke-audit"
  role   = aws_iam_role.audit_scheduler[0].id
  policy = data.aws_iam_policy_document.audit_scheduler.json
}
