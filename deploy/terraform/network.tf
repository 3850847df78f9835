# A private network for the functions that reach a database (optional): with
# vpc_subnet_ids they run in those subnets, and reach S3 and Secrets
# Manager through these endpoints, or through a NAT gateway of the VPC
# (docs/deploy.md). CloudWatch Logs needs no route: Lambda collects stdout.

# S3 through the route tables of the subnets (a gateway endpoint: free).
resource "aws_vpc_endpoint" "s3" {
  count = var.create_s3_endpoint ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.aws_region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.s3_endpoint_route_table_ids
}

# Secrets Manager through network interfaces in the subnets, with private
# DNS, so that the SDK's usual host name resolves to them.
resource "aws_vpc_endpoint" "secretsmanager" {
  count = var.create_secretsmanager_endpoint ? 1 : 0

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.aws_region}.secretsmanager"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.vpc_subnet_ids
  security_group_ids  = length(var.endpoint_security_group_ids) > 0 ? var.endpoint_security_group_ids : var.vpc_security_group_ids
  private_dns_enabled = true
}
