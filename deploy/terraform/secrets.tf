# Database credentials. Terraform creates the secrets but never their
# values, so no password reaches the Terraform state or the repository: set
# each value once, out of band (docs/deploy.md), as JSON, either
#   {"url": "postgres://user:password@host:5432/dbname?sslmode=require"}
# or
#   {"host": "...", "port": 5432, "username": "...", "password": "...", "dbname": "..."}

#tfsec:ignore:aws-ssm-secret-use-customer-key The AWS-managed key aws/secretsmanager encrypts the secret; a customer managed key would need a key policy and kms:Decrypt for the function, and protects no more from a principal allowed GetSecretValue.
resource "aws_secretsmanager_secret" "source" {
  name                    = "${var.name_prefix}/source-db"
  description             = "Read-only credentials of the totesys source database, read by ${local.function_names["ingest"]} and ${local.function_names["audit"]}."
  recovery_window_in_days = var.secret_recovery_window_days
}

#tfsec:ignore:aws-ssm-secret-use-customer-key The AWS-managed key aws/secretsmanager encrypts the secret; a customer managed key would need a key policy and kms:Decrypt for the function, and protects no more from a principal allowed GetSecretValue.
resource "aws_secretsmanager_secret" "warehouse" {
  name                    = "${var.name_prefix}/warehouse-db"
  description             = "Credentials of the star-schema warehouse database, read by ${local.function_names["load"]} (and ${local.function_names["audit"]} with audit_warehouse_check)."
  recovery_window_in_days = var.secret_recovery_window_days
}
