# Run once, by an administrator, before the first deploy (docs/deploy.md):
# creates the bucket that holds the main configuration's Terraform state, and
# the two roles GitHub Actions assumes through OIDC (no long-lived keys):
#   - plan:   read-only, from the main branch; runs `terraform plan`;
#   - deploy: may change Sandstone's resources, only from jobs in the
#             protected "production" environment; runs `terraform apply`.
# This configuration keeps its own (small) state locally.

terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = { Project = "sandstone", ManagedBy = "terraform-bootstrap" }
  }
}

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = var.aws_region
  prefix     = var.name_prefix
  github_url = "token.actions.githubusercontent.com"
  oidc_arn   = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn

  # The pipeline's roles live under their own IAM path, apart from the two
  # GitHub roles (path /), and each must carry the permissions boundary.
  pipeline_role_path = "/${local.prefix}/"
  pipeline_roles     = "arn:aws:iam::${local.account_id}:role${local.pipeline_role_path}*"
  github_roles       = "arn:aws:iam::${local.account_id}:role/${local.prefix}-github-*"
}

# --- Terraform state bucket --------------------------------------------------

#tfsec:ignore:aws-s3-enable-bucket-logging Server access logs of a bucket that only Terraform's two roles reach need a third bucket; CloudTrail records who assumed those roles, and the state is versioned.
resource "aws_s3_bucket" "state" {
  bucket = "${local.prefix}-tfstate-${local.account_id}-${local.region}"

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id
  versioning_configuration {
    status = "Enabled"
  }
}

#tfsec:ignore:aws-s3-encryption-customer-key SSE-S3 by choice: the state holds no secret (the secrets' values are never in Terraform), and a customer managed key would cost a key and a grant per role.
resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# The state holds resource details: refuse plain HTTP.
data "aws_iam_policy_document" "state_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.state.arn, "${aws_s3_bucket.state.arn}/*"]
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

resource "aws_s3_bucket_policy" "state" {
  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.state_tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.state]
}

# --- GitHub OIDC -------------------------------------------------------------

# An account has at most one provider for GitHub's issuer: reuse it if some
# other project made it already (create_github_oidc_provider = false).
resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_url}"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 0 : 1

  url = "https://${local.github_url}"
}

data "aws_iam_policy_document" "trust_plan" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.oidc_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_url}:sub"
      values   = ["repo:${var.github_repository}:ref:refs/heads/main"]
    }
  }
}

data "aws_iam_policy_document" "trust_deploy" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.oidc_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_url}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_url}:sub"
      values   = ["repo:${var.github_repository}:environment:${var.github_environment}"]
    }
  }
}

# --- Both roles: the state --------------------------------------------------

#tfsec:ignore:aws-iam-no-policy-wildcards The wildcard is a key prefix of the state bucket: the state and its lock files, whose names Terraform chooses.
data "aws_iam_policy_document" "state" {
  statement {
    sid       = "ListState"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.state.arn]
  }
  statement {
    sid       = "ReadWriteStateAndLock"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.state.arn}/${var.state_key_prefix}*"]
  }
}

# --- The plan role -----------------------------------------------------------

resource "aws_iam_role" "plan" {
  name                 = "${local.prefix}-github-plan"
  description          = "Assumed by GitHub Actions (main branch) to run terraform plan for Sandstone."
  assume_role_policy   = data.aws_iam_policy_document.trust_plan.json
  max_session_duration = 3600
}

# What terraform plan reads: the configuration of each kind of resource the
# main configuration has (Get, List and Describe calls, on the pipeline's
# names where the service takes a resource), and no data: no object, log
# line, message or secret value. A new kind of resource in the main
# configuration needs its read calls here (checkPlanRole lists them).
#tfsec:ignore:aws-iam-no-policy-wildcards Read calls only: s3:GetBucket* reads a bucket's settings (never an object) of the pipeline's buckets; the calls on "*" are those AWS authorizes on no resource (Describe*, ListTags of EC2, logs, alarms).
data "aws_iam_policy_document" "plan_read" {
  statement {
    sid = "BucketSettings"
    actions = [
      "s3:GetBucket*", "s3:GetAccelerateConfiguration", "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
    ]
    resources = ["arn:aws:s3:::${local.prefix}-ingestion-*", "arn:aws:s3:::${local.prefix}-processed-*"]
  }
  statement {
    sid = "Functions"
    actions = [
      "lambda:GetFunction", "lambda:GetFunctionCodeSigningConfig", "lambda:GetFunctionConcurrency",
      "lambda:GetFunctionEventInvokeConfig", "lambda:GetFunctionRecursionConfig", "lambda:GetPolicy",
      "lambda:GetRuntimeManagementConfig", "lambda:ListVersionsByFunction", "lambda:ListTags",
    ]
    resources = ["arn:aws:lambda:${local.region}:${local.account_id}:function:${local.prefix}-*"]
  }
  statement {
    sid = "RolesAndTheBoundary"
    actions = [
      "iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListRoleTags",
      "iam:GetPolicy", "iam:GetPolicyVersion",
    ]
    resources = [local.pipeline_roles, aws_iam_policy.pipeline_boundary.arn]
  }
  statement {
    sid     = "TopicQueueSchedulesSecrets"
    actions = ["sns:GetTopicAttributes", "sns:GetSubscriptionAttributes", "sns:ListTagsForResource", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ListQueueTags", "scheduler:GetSchedule", "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy"]
    resources = [
      "arn:aws:sns:${local.region}:${local.account_id}:${local.prefix}-*",
      "arn:aws:sqs:${local.region}:${local.account_id}:${local.prefix}-*",
      "arn:aws:scheduler:${local.region}:${local.account_id}:schedule/default/${local.prefix}-*",
      "arn:aws:secretsmanager:${local.region}:${local.account_id}:secret:${local.prefix}/*",
    ]
  }
  statement {
    sid     = "Catalog"
    actions = ["glue:GetDatabase", "glue:GetTable", "glue:GetTags"]
    resources = [
      "arn:aws:glue:${local.region}:${local.account_id}:catalog",
      "arn:aws:glue:${local.region}:${local.account_id}:database/${var.glue_database_name}",
      "arn:aws:glue:${local.region}:${local.account_id}:table/${var.glue_database_name}/*",
    ]
  }
  statement {
    sid = "ReadCallsThatTakeNoResource"
    actions = [
      "logs:DescribeLogGroups", "logs:DescribeMetricFilters", "logs:ListTagsForResource", "logs:ListTagsLogGroup",
      "cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource", "cloudwatch:GetDashboard",
      "ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists", "ec2:DescribeRouteTables", "ec2:DescribeVpcEndpointServices",
      "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces",
      "sts:GetCallerIdentity",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "plan_read" {
  name   = "read-configuration"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan_read.json
}

# Defence in depth: should a read grant above ever cover data, these
# denials still hold.
data "aws_iam_policy_document" "plan_no_data" {
  statement {
    sid           = "DenyObjectsButTheState"
    effect        = "Deny"
    actions       = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTorrent"]
    not_resources = ["${aws_s3_bucket.state.arn}/${var.state_key_prefix}*"]
  }
  statement {
    sid    = "DenyDataReads"
    effect = "Deny"
    actions = [
      "athena:GetQueryResults",
      "dynamodb:BatchGetItem",
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "kinesis:GetRecords",
      "logs:FilterLogEvents",
      "logs:GetLogEvents",
      "logs:GetQueryResults",
      "logs:StartLiveTail",
      "logs:StartQuery",
      "secretsmanager:GetSecretValue",
      "sqs:ReceiveMessage",
      "ssm:GetParameter",
      "ssm:GetParameterHistory",
      "ssm:GetParameters",
      "ssm:GetParametersByPath",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "plan_no_data" {
  name   = "no-data-reads"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.plan_no_data.json
}

resource "aws_iam_role_policy" "plan_state" {
  name   = "terraform-state"
  role   = aws_iam_role.plan.id
  policy = data.aws_iam_policy_document.state.json
}

# --- The deploy role ---------------------------------------------------------

resource "aws_iam_role" "deploy" {
  name                 = "${local.prefix}-github-deploy"
  description          = "Assumed by GitHub Actions (environment ${var.github_environment}) to run terraform apply for Sandstone."
  assume_role_policy   = data.aws_iam_policy_document.trust_deploy.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "deploy_state" {
  name   = "terraform-state"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.state.json
}

# What the main configuration creates, by name prefix. Wildcards are in
# names only, except for the few read calls AWS authorizes on "*".
#tfsec:ignore:aws-iam-no-policy-wildcards Deliberate: service-wide actions (s3:*, lambda:*, logs:*, sns:*, sqs:*, scheduler:*, glue:*) on resources named by the prefix only, since Terraform's create, read, update and delete of each resource call dozens of actions that change with the provider; IAM is written out action by action and held by the boundary and the denials below (boundary_test.go checks them).
data "aws_iam_policy_document" "deploy" {
  statement {
    sid     = "Buckets"
    actions = ["s3:*"]
    resources = [
      "arn:aws:s3:::${local.prefix}-ingestion-*",
      "arn:aws:s3:::${local.prefix}-processed-*",
    ]
  }
  statement {
    sid       = "Functions"
    actions   = ["lambda:*"]
    resources = ["arn:aws:lambda:${local.region}:${local.account_id}:function:${local.prefix}-*"]
  }
  # Roles: only under the pipeline's path, and only with the boundary. The
  # calls that give a role permissions (create, inline or managed policy)
  # are allowed only when the role carries the boundary, so no role the
  # deploy role makes can do more than the boundary allows.
  statement {
    sid       = "GrantOnlyUnderTheBoundary"
    actions   = ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary"]
    resources = [local.pipeline_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.pipeline_boundary.arn]
    }
  }
  statement {
    sid = "ManagePipelineRoles"
    actions = [
      "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRoleDescription",
      "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags",
      "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies", "iam:DetachRolePolicy",
      "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
    ]
    resources = [local.pipeline_roles]
  }
  statement {
    sid       = "PassPipelineRolesToLambdaAndScheduler"
    actions   = ["iam:PassRole"]
    resources = [local.pipeline_roles]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["lambda.amazonaws.com", "scheduler.amazonaws.com"]
    }
  }
  # No way out: the boundary cannot be removed or swapped, the boundary
  # policy cannot be changed, and the GitHub roles (this one included) and
  # their policies cannot be touched at all.
  statement {
    sid       = "DenyRemovingTheBoundary"
    effect    = "Deny"
    actions   = ["iam:DeleteRolePermissionsBoundary"]
    resources = ["*"]
  }
  statement {
    sid       = "DenyAnotherBoundary"
    effect    = "Deny"
    actions   = ["iam:PutRolePermissionsBoundary", "iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"]
    resources = ["*"]
    condition {
      test     = "StringNotEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.pipeline_boundary.arn]
    }
  }
  statement {
    sid       = "DenyChangingTheBoundaryPolicy"
    effect    = "Deny"
    actions   = ["iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"]
    resources = [aws_iam_policy.pipeline_boundary.arn]
  }
  statement {
    sid     = "DenyChangingTheGitHubRoles"
    effect  = "Deny"
    actions = ["iam:*"]
    resources = [
      local.github_roles,
      "arn:aws:iam::${local.account_id}:oidc-provider/${local.github_url}",
    ]
  }
  statement {
    sid     = "LogGroups"
    actions = ["logs:*"]
    resources = [
      "arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*",
      "arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*:*",
    ]
  }
  statement {
    sid       = "Alarms"
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource", "cloudwatch:TagResource", "cloudwatch:UntagResource"]
    resources = ["arn:aws:cloudwatch:${local.region}:${local.account_id}:alarm:${local.prefix}-*"]
  }
  statement {
    sid       = "Topic"
    actions   = ["sns:*"]
    resources = ["arn:aws:sns:${local.region}:${local.account_id}:${local.prefix}-*"]
  }
  statement {
    sid       = "Queue"
    actions   = ["sqs:*"]
    resources = ["arn:aws:sqs:${local.region}:${local.account_id}:${local.prefix}-*"]
  }
  statement {
    sid       = "Schedule"
    actions   = ["scheduler:*"]
    resources = ["arn:aws:scheduler:${local.region}:${local.account_id}:schedule/default/${local.prefix}-*"]
  }
  statement {
    sid = "Secrets"
    actions = [
      "secretsmanager:CreateSecret", "secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret",
      "secretsmanager:UpdateSecret", "secretsmanager:TagResource", "secretsmanager:UntagResource",
      "secretsmanager:GetResourcePolicy",
    ]
    resources = ["arn:aws:secretsmanager:${local.region}:${local.account_id}:secret:${local.prefix}/*"]
  }
  # The deploy role makes the secrets but never reads or grants their
  # values: no resource policy (which could grant it GetSecretValue), and
  # the values denied outright, whatever another policy allows.
  statement {
    sid       = "DenySecretValuesAndTheirPolicies"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:PutResourcePolicy", "secretsmanager:PutSecretValue", "secretsmanager:DeleteResourcePolicy"]
    resources = ["*"]
  }
  # Functions in a VPC (vpc_subnet_ids): Lambda checks that whoever creates
  # or updates one may describe its subnets, security groups and VPC; the
  # network interfaces themselves are made with the function's role.
  statement {
    sid       = "DescribeTheFunctionsNetwork"
    actions   = ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces"]
    resources = ["*"]
  }
  # The optional VPC endpoints (S3 gateway, Secrets Manager interface):
  # created only with the Project = sandstone tag the main configuration's
  # default_tags put on everything, changed and deleted only when they
  # carry it.
  statement {
    sid       = "CreateTaggedEndpoints"
    actions   = ["ec2:CreateVpcEndpoint"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/Project"
      values   = ["sandstone"]
    }
  }
  statement {
    sid       = "TagEndpointsOnCreate"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:aws:ec2:${local.region}:${local.account_id}:vpc-endpoint/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateVpcEndpoint"]
    }
  }
  statement {
    sid       = "ManageTaggedEndpoints"
    actions   = ["ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints", "ec2:CreateTags", "ec2:DeleteTags"]
    resources = ["arn:aws:ec2:${local.region}:${local.account_id}:vpc-endpoint/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = ["sandstone"]
    }
  }
  statement {
    sid     = "Catalog"
    actions = ["glue:*"]
    resources = [
      "arn:aws:glue:${local.region}:${local.account_id}:catalog",
      "arn:aws:glue:${local.region}:${local.account_id}:database/${var.glue_database_name}",
      "arn:aws:glue:${local.region}:${local.account_id}:table/${var.glue_database_name}/*",
      "arn:aws:glue:${local.region}:${local.account_id}:userDefinedFunction/${var.glue_database_name}/*",
    ]
  }
  statement {
    sid = "ReadCallsThatTakeNoResource"
    actions = [
      "logs:DescribeLogGroups", "cloudwatch:DescribeAlarms", "sts:GetCallerIdentity",
      "ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists", "ec2:DescribeRouteTables", "ec2:DescribeVpcEndpointServices",
    ]
    resources = ["*"]
  }
}

# The permissions boundary of every pipeline role: the most any of them may
# ever do (the union of what the four functions and the two schedules need,
# by name prefix). Each role's own policy narrows it further.
resource "aws_iam_policy" "pipeline_boundary" {
  name        = "${local.prefix}-pipeline-boundary"
  description = "Permissions boundary of Sandstone's function and scheduler roles."
  policy      = data.aws_iam_policy_document.pipeline_boundary.json
}

#tfsec:ignore:aws-iam-no-policy-wildcards A boundary grants nothing by itself: its wildcards are the prefixes of the pipeline's buckets, secrets, log groups and functions, and each role's own policy names its exact resources (checks_test.go).
data "aws_iam_policy_document" "pipeline_boundary" {
  statement {
    sid       = "PipelineBuckets"
    actions   = ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["arn:aws:s3:::${local.prefix}-ingestion-*", "arn:aws:s3:::${local.prefix}-processed-*"]
  }
  statement {
    sid       = "PipelineSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:aws:secretsmanager:${local.region}:${local.account_id}:secret:${local.prefix}/*"]
  }
  statement {
    sid       = "PipelineLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*:*"]
  }
  statement {
    sid       = "PipelineQueue"
    actions   = ["sqs:SendMessage"]
    resources = ["arn:aws:sqs:${local.region}:${local.account_id}:${local.prefix}-*"]
  }
  statement {
    sid       = "PipelineFunctions"
    actions   = ["lambda:InvokeFunction"]
    resources = ["arn:aws:lambda:${local.region}:${local.account_id}:function:${local.prefix}-*"]
  }
  # Functions in a VPC: Lambda makes their network interfaces with their
  # role (EC2 takes "*" for these calls).
  statement {
    sid = "PipelineNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "sandstone-resources"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
