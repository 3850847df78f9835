output "state_bucket" {
  description = "Bucket for the main configuration's state: repository variable TF_STATE_BUCKET."
  value       = aws_s3_bucket.state.bucket
}

output "plan_role_arn" {
  description = "Role the plan job assumes: repository variable AWS_PLAN_ROLE_ARN."
  value       = aws_iam_role.plan.arn
}

output "deploy_role_arn" {
  description = "Role the apply job assumes: repository variable AWS_DEPLOY_ROLE_ARN."
  value       = aws_iam_role.deploy.arn
}

output "pipeline_boundary_arn" {
  description = "Permissions boundary the main configuration attaches to every role it creates (it derives the same ARN from name_prefix)."
  value       = aws_iam_policy.pipeline_boundary.arn
}
