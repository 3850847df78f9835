# What starts each function. Events are only hints: every run does all pending
# work of its stage, so lost, repeated or reordered events change nothing.

# ingest: a tick of EventBridge Scheduler.
resource "aws_scheduler_schedule" "ingest" {
  name                = local.schedule_names["ingest"]
  description         = "Starts ${local.function_names["ingest"]} on ${var.schedule_expression}."
  schedule_expression = var.schedule_expression

  flexible_time_window {
    mode = "OFF"
  }

  # DISABLED until the secrets are set (secrets_set), so that a first
  # deploy does not fail every tick on an empty secret.
  state = local.schedule_state

  target {
    arn      = aws_lambda_function.stage["ingest"].arn
    role_arn = aws_iam_role.scheduler.arn
    # Scheduler fills in the <aws.scheduler.*> context attributes. Written
    # out rather than with jsonencode, which would escape < and >.
    input = <<-EOT
      {"source": "sandstone.scheduler", "stage": "ingest", "schedule_arn": "<aws.scheduler.schedule-arn>", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    EOT

    # A tick that cannot be delivered soon is worthless: the next one comes.
    retry_policy {
      maximum_event_age_in_seconds = 300
      maximum_retry_attempts       = 2
    }
  }
}

# audit: its own, slower schedule (audit_schedule_expression; "" for none).
resource "aws_scheduler_schedule" "audit" {
  count = local.audit_scheduled ? 1 : 0

  name                = "${var.name_prefix}-audit"
  description         = "Starts ${local.function_names["audit"]} on ${var.audit_schedule_expression}."
  schedule_expression = var.audit_schedule_expression

  flexible_time_window {
    mode = "OFF"
  }

  # DISABLED until the secrets are set (secrets_set), so that a first
  # deploy does not fail every tick on an empty secret.
  state = local.schedule_state

  target {
    arn      = aws_lambda_function.stage["audit"].arn
    role_arn = aws_iam_role.audit_scheduler[0].arn
    input    = <<-EOT
      {"source": "sandstone.scheduler", "stage": "audit", "schedule_arn": "<aws.scheduler.schedule-arn>", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    EOT

    # A day's audit may wait an hour for delivery; later, the next one comes.
    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 3
    }
  }
}

# transform and load: the same schedule also starts them, as a sweep. A run
# with nothing to do lists the manifests and ends; a lost S3 notification
# then delays a batch by one tick at most, and every stage has a
# heartbeat tied to the schedule (the not-running alarms).
resource "aws_scheduler_schedule" "sweep" {
  for_each = toset(["transform", "load"])

  name                = local.schedule_names[each.key]
  description         = "Starts ${local.function_names[each.key]} on ${var.schedule_expression}, as a sweep after the S3 notifications."
  schedule_expression = var.schedule_expression

  flexible_time_window {
    mode = "OFF"
  }

  # DISABLED until the secrets are set (secrets_set), so that a first
  # deploy does not fail every tick on an empty secret.
  state = local.schedule_state

  target {
    arn      = aws_lambda_function.stage[each.key].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = <<-EOT
      {"source": "sandstone.scheduler", "stage": "${each.key}", "schedule_arn": "<aws.scheduler.schedule-arn>", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    EOT

    retry_policy {
      maximum_event_age_in_seconds = 300
      maximum_retry_attempts       = 2
    }
  }
}

# transform: a new manifest in the ingestion bucket.
resource "aws_lambda_permission" "ingestion_manifests" {
  statement_id   = "AllowIngestionBucketManifests"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.stage["transform"].function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.ingestion.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "ingestion" {
  bucket = aws_s3_bucket.ingestion.id

  lambda_function {
    id                  = "manifests-to-transform"
    lambda_function_arn = aws_lambda_function.stage["transform"].arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = local.manifest_prefix
    filter_suffix       = local.manifest_suffix
  }

  depends_on = [aws_lambda_permission.ingestion_manifests]
}

# load: a new manifest in the processed bucket.
resource "aws_lambda_permission" "processed_manifests" {
  statement_id   = "AllowProcessedBucketManifests"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.stage["load"].function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.processed.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "processed" {
  bucket = aws_s3_bucket.processed.id

  lambda_function {
    id                  = "manifests-to-load"
    lambda_function_arn = aws_lambda_function.stage["load"].arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = local.manifest_prefix
    filter_suffix       = local.manifest_suffix
  }

  depends_on = [aws_lambda_permission.processed_manifests]
}
