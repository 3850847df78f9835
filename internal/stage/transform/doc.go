// Package transform is Sandstone's second stage: it turns each ingested
// batch of source row versions into the star schema's rows, one processed
// batch per ingested batch, with the same sequence number.
//
// # Order and state
//
// Ingest batch N is transformed only after N-1: a run loads the state saved
// with the newest processed batch and works through every newer ingest
// batch in order. The state (gzip JSON at state/<batch>-<run>.json.gz,
// named by the manifest's state_key) holds the current rows of the small
// tables the dimensions join (address, department, counterparty, staff),
// the sets of ids dim_currency, dim_design, dim_payment_type and
// dim_transaction hold (compressed bitmaps), and the parked rows. It never
// holds fact history, so memory does not grow with history, and transform
// never reads the source database.
//
// # Within a batch
//
// Dimensions come before facts. dim_location is the batch's addresses;
// dim_counterparty joins each counterparty to its legal address and
// dim_staff each staff member to the department (a NULL location becomes
// 'Unknown'), always to the current row held in the state. A changed
// address re-emits its dim_location row and every dim_counterparty row
// whose legal address it is; a changed department re-emits the dim_staff
// rows of its staff. dim_currency names each code as ISO 4217 lists it (an
// unknown code keeps the code as its name and logs a warning). A dimension
// object holds one row per id: the newest version in the batch; a version
// older than the one the state holds is ignored. dim_currency, dim_design,
// dim_payment_type and dim_transaction stream, as do the facts.
//
// A batch that log-based capture read (the manifest's capture) lists its
// rows in commit order, so commit order decides instead: an id's last row
// in the batch is its current version, whatever its last_updated says, and
// no version is ignored for being older by last_updated than the one the
// state holds. The capture columns (_sandstone_op, _sandstone_lsn,
// _sandstone_commit_time) are not source columns: they are read past.
//
// Every source row version of sales_order, purchase_order and payment is
// one fact row, in the order of the ingested object (commit order in a
// capture batch): timestamps split into a date and a time of day (to the
// millisecond), text dates parsed strictly as YYYY-MM-DD, money kept as
// exact cents. dim_date holds every date the batch's fact rows refer to.
// The processed manifest carries the ingested batch's tombstones
// (deleted), revived ids and capture on to load.
//
// # No value is changed on the way
//
// Each ingested object declares its column types (the manifest's columns,
// checked against the Parquet file's own schema; a disagreement stops the
// stage). When every column a row type needs has exactly the type it
// expects (and NULLs only where it allows them, and timestamps parquet-go
// converts correctly), the object is read as it always was. Otherwise each
// value is converted exactly: an INT64 that fits an INT32, an integer or a
// DECIMAL with fewer decimals into cents, numeric text such as "12.50"
// (ingest writes a numeric without precision as text), a nullable column's
// values that are not NULL. A value that cannot be kept exactly (digits
// lost, out of range, a NULL where a value is needed, text that is not a
// number) rejects its row as a bad_value naming the column, the value and
// why; nothing is truncated, rescaled or defaulted. A column that cannot be
// read as the expected type at all (BOOLEAN for an INT32, text for a
// timestamp, a floating-point number for money, a missing column) stops
// the stage with source_schema_mismatch, naming table, column and both
// types. Every table's created_at and last_updated must lie within years
// 0001 to 9999 (what Parquet readers, JSON and dim_date hold): a row
// stamped infinity, -infinity or beyond is rejected.
//
// # Bad rows
//
// A row that cannot be transformed does not stop the batch and is never
// dropped silently. It is written, with its table, its source values and
// the reason, to the batch's rejects object (JSON lines, the manifest's
// rejects), counted there and logged once a batch at ERROR with error_kind
// bad_rows_rejected. There are two kinds:
//
//   - bad_value: a value no version of the schema allows: a text date that
//     is not YYYY-MM-DD, an id, quantity or amount that is zero or
//     negative (payment amounts too: refunds are a payment type), money out
//     of DECIMAL(10,2), a value a drifted column type cannot hold exactly,
//     a timestamp outside 0001-9999, last_updated before created_at, a
//     transaction_type other than SALE or PURCHASE or one that does not
//     match its order id.
//     These rejects are final: a corrected row arrives from the source as a
//     new row version anyway.
//   - missing_reference: the row refers to a row transform has not seen
//     (yet), e.g. a sales order whose design is stamped later than the
//     order. The row is parked in the state and tried again at every later
//     batch once that batch's dimensions are applied; when its reference
//     has arrived it is emitted in that batch and counted in the manifest's
//     released. A counterparty waiting for its address, or a staff member
//     for the department, is parked the same way (a newer version of it
//     replaces the parked one).
//
// # Crash safety and concurrency
//
// A batch's objects are written first, then its state, and its manifest
// last, exclusively: a crash leaves only unreferenced objects, and a rerun
// writes the batch again, once. When two runs race for a batch, the one
// whose manifest comes second stops quietly; its objects stay unreferenced.
// Nothing is overwritten or deleted.
package transform
