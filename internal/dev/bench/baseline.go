package bench

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Copied is what Baseline moved.
type Copied struct {
	// Rows counts the rows copied per table.
	Rows map[string]int64
	// Duration is the whole copy, from connecting to the last row in.
	Duration time.Duration
}

// Total is the number of rows copied.
func (c Copied) Total() int64 {
	var n int64
	for _, v := range c.Rows {
		n += v
	}
	return n
}

// Baseline is the physical copy the pipeline is measured against: each of
// tables (in the source's current schema) is streamed out of the source with
// COPY … TO STDOUT and, through a pipe, into a plain table of the same
// columns in schema of the warehouse database with COPY … FROM STDIN, table
// by table, with no transformation at all. The tables are created empty
// first (replacing any left by an earlier run), without keys or indexes.
func Baseline(ctx context.Context, sourceURL, warehouseURL, schema string, tables []string) (Copied, error) {
	start := time.Now()
	res := Copied{Rows: map[string]int64{}}
	src, err := pgconn.Connect(ctx, sourceURL)
	if err != nil {
		return res, fmt.Errorf("baseline: connect to source: %w", err)
	}
	defer func() { _ = src.Close(context.WithoutCancel(ctx)) }()
	dst, err := pgconn.Connect(ctx, warehouseURL)
	if err != nil {
		return res, fmt.Errorf("baseline: connect to warehouse: %w", err)
	}
	defer func() { _ = dst.Close(context.WithoutCancel(ctx)) }()

	ddl := []string{"DROP SCHEMA IF EXISTS " + ident(schema) + " CASCADE", "CREATE SCHEMA " + ident(schema)}
	for _, t := range tables {
		cols, err := columnsOf(ctx, src, t)
		if err != nil {
			return res, fmt.Errorf("baseline: %s: %w", t, err)
		}
		ddl = append(ddl, "CREATE TABLE "+ident(schema, t)+" ("+strings.Join(cols, ", ")+")")
	}
	for _, stmt := range ddl {
		if _, err := dst.Exec(ctx, stmt).ReadAll(); err != nil {
			return res, fmt.Errorf("baseline: create tables: %w", err)
		}
	}
	for _, t := range tables {
		n, err := copyTable(ctx, src, dst, "COPY "+ident(t)+" TO STDOUT", "COPY "+ident(schema, t)+" FROM STDIN")
		if err != nil {
			return res, fmt.Errorf("baseline: copy %s: %w", t, err)
		}
		res.Rows[t] = n
	}
	res.Duration = time.Since(start)
	return res, nil
}

// copyTable pipes the output of the COPY TO statement out on src into the
// COPY FROM statement in on dst, and returns the rows copied.
func copyTable(ctx context.Context, src, dst *pgconn.PgConn, out, in string) (int64, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := src.CopyTo(ctx, pw, out)
		_ = pw.CloseWithError(err) // a nil error closes the pipe normally
		done <- err
	}()
	tag, err := dst.CopyFrom(ctx, pr, in)
	_ = pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if CopyFrom stopped early
	if outErr := <-done; outErr != nil && err == nil {
		err = outErr
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// plainType matches the type names format_type gives the built-in types
// ("integer", "character varying(20)", "numeric(10,2)", "timestamp without
// time zone"): only those are written into the baseline's DDL; any other
// type (an enum of the source, say) becomes text, which COPY fills from the
// same text.
var plainType = regexp.MustCompile(`^[a-z][a-z0-9 ,()]*$`)

// columnsOf returns the column definitions of table for CREATE TABLE.
func columnsOf(ctx context.Context, conn *pgconn.PgConn, table string) ([]string, error) {
	rr := conn.ExecParams(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typnamespace = 'pg_catalog'::regnamespace
		  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		 ORDER BY a.attnum`, [][]byte{[]byte(ident(table))}, nil, nil, nil)
	var cols []string
	for rr.NextRow() {
		v := rr.Values()
		name, typ := string(v[0]), string(v[1])
		if string(v[2]) != "t" || !plainType.MatchString(typ) {
			typ = "text"
		}
		cols = append(cols, ident(name)+" "+typ)
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("table %s not found", table)
	}
	return cols, nil
}

// ident quotes a (possibly schema-qualified) name.
func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
