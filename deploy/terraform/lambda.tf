# The four functions (ingest, transform, load and audit), one bootstrap zip,
# each with its own log group, role and asynchronous-failure destination.

#tfsec:ignore:aws-cloudwatch-log-group-customer-key CloudWatch Logs encrypts every log group; a customer managed key would cost a key and a key policy, for lines that carry no secret (passwords are redacted, internal/base/config).
resource "aws_cloudwatch_log_group" "stage" {
  for_each = local.stages

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
}

#tfsec:ignore:aws-lambda-enable-tracing X-Ray would need xray:PutTraceSegments on "*" in every role; each run logs its run_id, start, end and error_kind, and its EMF metrics, which answer what a trace would.
resource "aws_lambda_function" "stage" {
  for_each = local.stages

  function_name    = local.function_names[each.key]
  description      = each.value.description
  role             = aws_iam_role.stage[each.key].arn
  filename         = local.lambda_zip
  source_code_hash = filebase64sha256(local.lambda_zip)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = local.lambda_memory_mb[each.key]
  timeout          = local.lambda_timeout_seconds[each.key]

  # Stages serialize on their buckets, so a second concurrent run only
  # waits for the first; ingest keeps one reserved slot by default (its
  # capture runs alone), the others draw on the account's pool unless
  # reserved_concurrency says otherwise (null is unreserved).
  reserved_concurrent_executions = local.reserved_concurrency[each.key]

  # In a VPC (vpc_subnet_ids), for the stages that reach a database; the
  # role's ENI permissions (iam.tf) let Lambda make the interfaces.
  dynamic "vpc_config" {
    for_each = contains(local.vpc_stages, each.key) ? [each.key] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = var.vpc_security_group_ids
    }
  }

  environment {
    variables = each.value.environment
  }

  # The stages log JSON lines on stdout themselves; Text keeps them as they
  # are, so the metric filters and Logs Insights see their fields.
  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.stage[each.key].name
  }

  depends_on = [aws_iam_role_policy.stage]
}

# Invocations that still fail after the retries, or that wait too long
# (events are only hints), are recorded in the dead-letter queue.
resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name_prefix}-failed-invocations"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_lambda_function_event_invoke_config" "stage" {
  for_each = local.stages

  function_name                = aws_lambda_function.stage[each.key].function_name
  maximum_retry_attempts       = var.async_retry_attempts
  maximum_event_age_in_seconds = var.async_max_event_age_seconds

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}
