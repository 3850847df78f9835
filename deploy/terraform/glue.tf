# A Glue Data Catalog database with one table per star-schema table over the
# processed bucket's Parquet, so Athena can query the star schema directly.
# Each table reads every object under its prefix (TABLE/YYYY/MM/DD/...):
# fact tables hold one row per source row version, as in the warehouse;
# dimension tables hold every version transform wrote, newest in the
# object whose key sorts last ("$path" in Athena). docs/deploy.md has
# example queries.

resource "aws_glue_catalog_database" "star" {
  name        = var.glue_database_name
  description = "Sandstone star schema over s3://${aws_s3_bucket.processed.bucket}/ (Parquet, zstd)."
}

resource "aws_glue_catalog_table" "star" {
  for_each = local.star_tables

  name          = each.key
  database_name = aws_glue_catalog_database.star.name
  description   = "Star table ${each.key}. Dates are date, money decimal(10,2), times of day int milliseconds since midnight UTC."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL       = "TRUE"
    classification = "parquet"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.processed.bucket}/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value
      content {
        name    = columns.value[0]
        type    = columns.value[1]
        comment = contains(local.time_columns, columns.value[0]) ? "time of day: milliseconds since midnight UTC" : null
      }
    }
  }
}
