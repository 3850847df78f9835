output "ingestion_bucket" {
  description = "Name of the ingestion bucket (raw row versions, Parquet + manifests)."
  value       = aws_s3_bucket.ingestion.bucket
}

output "processed_bucket" {
  description = "Name of the processed bucket (star-schema Parquet + manifests)."
  value       = aws_s3_bucket.processed.bucket
}

output "function_names" {
  description = "Lambda function name of each stage (ingest, transform, load, audit)."
  value       = { for s, f in aws_lambda_function.stage : s => f.function_name }
}

output "log_groups" {
  description = "CloudWatch Logs group of each stage, for Logs Insights."
  value       = { for s, g in aws_cloudwatch_log_group.stage : s => g.name }
}

output "source_secret_arn" {
  description = "Secrets Manager secret to fill with the totesys credentials (docs/deploy.md)."
  value       = aws_secretsmanager_secret.source.arn
}

output "warehouse_secret_arn" {
  description = "Secrets Manager secret to fill with the warehouse credentials (docs/deploy.md)."
  value       = aws_secretsmanager_secret.warehouse.arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms publish to."
  value       = aws_sns_topic.alarms.arn
}

output "dead_letter_queue_url" {
  description = "URL of the SQS queue holding invocations that failed after all retries."
  value       = aws_sqs_queue.dlq.url
}

output "schedule_name" {
  description = "EventBridge Scheduler schedule that starts ingest."
  value       = aws_scheduler_schedule.ingest.name
}

output "audit_schedule_name" {
  description = "EventBridge Scheduler schedule that starts the audit; null when audit_schedule_expression is \"\"."
  value       = one(aws_scheduler_schedule.audit[*].name)
}

output "glue_database" {
  description = "Glue Data Catalog database with the star tables, for Athena."
  value       = aws_glue_catalog_database.star.name
}
