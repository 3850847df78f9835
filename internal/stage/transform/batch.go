package transform

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/progress"
	"github.com/sandstone-data/sandstone/internal/contract/lake"
	"github.com/sandstone-data/sandstone/internal/contract/star"
	"github.com/sandstone-data/sandstone/internal/contract/totesys"
)

// batch turns one ingested batch into one processed batch.
type batch struct {
	ctx      context.Context
	ingest   *lake.Bucket
	log      *slog.Logger
	seq      int64
	st       *state
	facts    facts
	out      *outputs
	rej      *rejectWriter
	res      BatchResult
	source   *lake.BatchRef // the ingested batch, recorded in the manifest
	progress *progress.Meter
	// capture is set for a batch that log-based capture read: its rows lie
	// in commit order, so an id's last row is its current version, whatever
	// its last_updated says.
	capture bool

	// The ids of the addresses and departments that changed in the batch.
	changedAddresses   map[int32]bool
	changedDepartments map[int32]bool

	dimDate         *output[star.DimDate]
	dimStaff        *output[star.DimStaff]
	dimLocation     *output[star.DimLocation]
	dimCurrency     *output[star.DimCurrency]
	dimDesign       *output[star.DimDesign]
	dimCounterparty *output[star.DimCounterparty]
	dimPaymentType  *output[star.DimPaymentType]
	dimTransaction  *output[star.DimTransaction]
	factSalesOrder  *output[star.FactSalesOrder]
	factPurchase    *output[star.FactPurchaseOrder]
	factPayment     *output[star.FactPayment]
}

func newBatch(ctx context.Context, opts Options, log *slog.Logger, runID string, seq int64, st *state) *batch {
	o := &outputs{ctx: ctx, bucket: opts.Processed, now: time.Now().UTC(), seq: seq, runID: runID}
	b := &batch{ctx: ctx, ingest: opts.Ingest, log: log, seq: seq, st: st, out: o, progress: opts.Progress,
		facts: facts{st: st, dates: dateSet{}},
		res:   BatchResult{Sequence: seq, Batch: lake.BatchID(seq), Rows: map[string]int64{}}}
	// Created in star.Tables order, so the manifest lists dimensions first.
	b.dimDate = newOutput[star.DimDate](o)
	b.dimStaff = newOutput[star.DimStaff](o)
	b.dimLocation = newOutput[star.DimLocation](o)
	b.dimCurrency = newOutput[star.DimCurrency](o)
	b.dimDesign = newOutput[star.DimDesign](o)
	b.dimCounterparty = newOutput[star.DimCounterparty](o)
	b.dimPaymentType = newOutput[star.DimPaymentType](o)
	b.dimTransaction = newOutput[star.DimTransaction](o)
	b.factSalesOrder = newOutput[star.FactSalesOrder](o)
	b.factPurchase = newOutput[star.FactPurchaseOrder](o)
	b.factPayment = newOutput[star.FactPayment](o)
	b.rej = &rejectWriter{out: o}
	o.all = append(o.all, b.rej)
	return b
}

// process transforms ingest manifest im and commits the processed batch;
// committed is false when another run committed it first.
func (b *batch) process(im *lake.Manifest, runID string) (committed bool, err error) {
	start := time.Now()
	b.capture = im.Capture != nil
	defer func() {
		if err != nil {
			b.out.abort()
		}
	}()
	steps := []func(*lake.Manifest) error{
		b.addresses, b.departments, b.counterparties, b.staff,
		b.currencies, b.designs, b.paymentTypes, b.transactions,
		b.retryParked,
		b.salesOrders, b.purchaseOrders, b.payments,
	}
	for _, step := range steps {
		if err := step(im); err != nil {
			return false, err
		}
	}
	if err := write(b.dimDate, b.facts.dates.rows()); err != nil {
		return false, err
	}

	m := lake.Manifest{Version: 1, Stage: "transform", Batch: lake.BatchID(b.seq), Sequence: b.seq,
		RunID: runID, SourceNewest: im.SourceNewest, Released: b.res.Released, Source: b.source,
		// Tombstones and revived ids go on to load, with when they were
		// seen, and so does what capture read.
		Repair: im.Repair, Deleted: im.Deleted, Revived: im.Revived, Capture: im.Capture, SnapshotAt: im.SnapshotAt}
	for _, o := range b.out.all {
		obj, ok, err := o.commit()
		if err != nil {
			return false, errkind.Wrap(errkind.BucketWriteFailed, err)
		}
		switch {
		case !ok:
		case obj.Table == rejectsTable:
			m.Rejects = &obj
		default:
			m.Tables = append(m.Tables, obj)
			b.res.Rows[obj.Table] = obj.Rows
		}
	}
	b.st.Sequence = b.seq
	if committed, err := b.out.bucket.Commit(b.ctx, &m, b.st); !committed || err != nil {
		return false, err
	}
	b.res.Parked, b.res.RejectedBy = b.parked(), b.rej.byTable
	if b.res.Rejected > 0 {
		b.log.Error("rows rejected", "error_kind", errkind.BadRowsRejected, "batch", b.res.Batch,
			"rejected", b.res.Rejected, "by_table", b.rej.byTable, "first", b.rej.first,
			"parked", b.res.Parked, "rejects", m.Rejects.Key)
	}
	b.res.Seconds = time.Since(start).Seconds()
	return true, nil
}

// parked counts the rows waiting for a missing reference.
func (b *batch) parked() int64 {
	n := int64(len(b.st.Parked))
	for _, c := range b.st.Counterparties {
		if c.Pending {
			n++
		}
	}
	for _, s := range b.st.Staff {
		if s.Pending {
			n++
		}
	}
	return n
}

func write[T any](o *output[T], rows []T) error {
	if err := o.write(rows); err != nil {
		return errkind.Wrap(errkind.BucketWriteFailed, err)
	}
	return nil
}

// reject records a row that cannot be transformed in the rejects object.
func (b *batch) reject(table string, row any, p *problem) error {
	b.res.Rejected++
	if err := b.rej.add(table, row, p); err != nil {
		return errkind.Wrap(errkind.BucketWriteFailed, err)
	}
	return nil
}

// rejectFact rejects a fact row and parks it when it lacks a reference.
func (b *batch) rejectFact(table string, row any, p *problem) error {
	if err := b.reject(table, row, p); err != nil {
		return err
	}
	if p.kind == missingRef {
		data, err := json.Marshal(row)
		if err != nil {
			return errkind.Wrap(errkind.Internal, fmt.Errorf("park %s row: %w", table, err))
		}
		b.st.Parked = append(b.st.Parked, parkedRow{Table: table, Since: b.seq, Reason: p.reason, Row: data})
	}
	return nil
}

// open downloads the batch's object for table; nil when the batch has none.
func (b *batch) open(im *lake.Manifest, table string) (*lake.ParquetFile, error) {
	obj, ok := im.Table(table)
	if !ok {
		return nil, nil
	}
	src, err := lake.OpenObject(b.ctx, b.ingest, obj)
	if err != nil {
		return nil, errkind.Default(errkind.BucketReadFailed, fmt.Errorf("%s: %w", table, err))
	}
	return src, nil
}

// readAll reads the (small) table's rows of the batch, keeping the current
// version of each id: the newest by last_updated, or in a capture batch the
// last in commit order.
func readAll[T any](b *batch, im *lake.Manifest, table string, version func(*T) (int32, time.Time)) ([]*T, error) {
	src, err := b.openIngested(im, table)
	if err != nil || src == nil {
		return nil, err
	}
	defer src.Close()
	newest := map[int32]*T{}
	err = readSource(b.ctx, src, func(rows []T) error {
		for i := range rows {
			r := rows[i]
			id, lu := version(&r)
			if old, ok := newest[id]; ok && !b.capture {
				if _, olu := version(old); lu.Before(olu) {
					continue
				}
			}
			newest[id] = &r
		}
		return nil
	}, b.rejecter(table))
	if err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(newest))
	out := make([]*T, len(ids))
	for i, id := range ids {
		out[i] = newest[id]
	}
	return out, nil
}

// The small dimensions: their current rows live in the state.

func (b *batch) addresses(im *lake.Manifest) error {
	rows, err := readAll(b, im, "address", func(a *totesys.Address) (int32, time.Time) { return a.AddressID, a.LastUpdated })
	if err != nil {
		return err
	}
	var out []star.DimLocation
	for _, a := range rows {
		if p := checkAddress(a); p != nil {
			if err := b.reject("address", a, p); err != nil {
				return err
			}
			continue
		}
		if old := b.st.Addresses[a.AddressID]; b.stale(old != nil && a.LastUpdated.Before(old.LastUpdated)) {
			continue // an older version than the one held
		}
		b.st.Addresses[a.AddressID] = a
		out = append(out, dimLocation(a))
	}
	b.changedAddresses = idsOfLocations(out)
	return write(b.dimLocation, out)
}

func (b *batch) departments(im *lake.Manifest) error {
	rows, err := readAll(b, im, "department", func(d *totesys.Department) (int32, time.Time) { return d.DepartmentID, d.LastUpdated })
	if err != nil {
		return err
	}
	b.changedDepartments = map[int32]bool{}
	for _, d := range rows {
		if p := checkDepartment(d); p != nil {
			if err := b.reject("department", d, p); err != nil {
				return err
			}
			continue
		}
		if old := b.st.Departments[d.DepartmentID]; b.stale(old != nil && d.LastUpdated.Before(old.LastUpdated)) {
			continue
		}
		b.st.Departments[d.DepartmentID] = d
		b.changedDepartments[d.DepartmentID] = true
	}
	return nil
}

// stale tells whether a version older by last_updated than the one the
// state holds is to be ignored: in a poll batch it is (a re-read within the
// lookback), in a capture batch never, as commit order decides.
func (b *batch) stale(older bool) bool { return older && !b.capture }

func idsOfLocations(rows []star.DimLocation) map[int32]bool {
	m := make(map[int32]bool, len(rows))
	for _, r := range rows {
		m[r.LocationID] = true
	}
	return m
}

// counterparties applies the batch's counterparty versions and emits the
// dim_counterparty rows that changed: a new version, a new legal address,
// or a parked counterparty whose address has arrived.
func (b *batch) counterparties(im *lake.Manifest) error {
	rows, err := readAll(b, im, "counterparty", func(c *totesys.Counterparty) (int32, time.Time) { return c.CounterpartyID, c.LastUpdated })
	if err != nil {
		return err
	}
	out, err := joinParent(b, child[totesys.Counterparty, totesys.Address]{
		table: "counterparty", parentColumn: "legal_address_id", parentName: "address",
		key: func(c *totesys.Counterparty) (int32, int32, time.Time) {
			return c.CounterpartyID, c.LegalAddressID, c.LastUpdated
		},
		check: checkCounterparty,
		held:  b.st.Counterparties, parents: b.st.Addresses, changedParents: b.changedAddresses,
	}, rows, dimCounterparty)
	if err != nil {
		return err
	}
	return write(b.dimCounterparty, out)
}

// staff applies the batch's staff versions and emits the dim_staff rows
// that changed: a new version, a changed department, or a parked staff
// member whose department has arrived.
func (b *batch) staff(im *lake.Manifest) error {
	rows, err := readAll(b, im, "staff", func(s *totesys.Staff) (int32, time.Time) { return s.StaffID, s.LastUpdated })
	if err != nil {
		return err
	}
	out, err := joinParent(b, child[totesys.Staff, totesys.Department]{
		table: "staff", parentColumn: "department_id", parentName: "department",
		key: func(s *totesys.Staff) (int32, int32, time.Time) {
			return s.StaffID, s.DepartmentID, s.LastUpdated
		},
		check: checkStaff,
		held:  b.st.Staff, parents: b.st.Departments, changedParents: b.changedDepartments,
	}, rows, dimStaff)
	if err != nil {
		return err
	}
	return write(b.dimStaff, out)
}

// child describes a table whose dimension rows join a parent row:
// counterparty its legal address, staff its department.
type child[R, P any] struct {
	table, parentColumn, parentName string
	// key returns a row's id, its parent's id and its last_updated.
	key            func(*R) (id, parent int32, lastUpdated time.Time)
	check          func(*R) *problem
	held           map[int32]*held[R]
	parents        map[int32]*P
	changedParents map[int32]bool
}

// joinParent applies the batch's versions of c's table and returns the
// dimension rows to emit: new versions, rows whose parent changed, and
// parked rows whose parent has arrived. A new version whose parent is
// unknown is rejected as a missing reference and parked.
func joinParent[R, P, O any](b *batch, c child[R, P], rows []*R, build func(*R, *P) O) ([]O, error) {
	changed := map[int32]bool{}
	for _, r := range rows {
		if p := c.check(r); p != nil {
			if err := b.reject(c.table, r, p); err != nil {
				return nil, err
			}
			continue
		}
		id, _, lu := c.key(r)
		h := c.held[id]
		if h == nil {
			h = &held[R]{}
			c.held[id] = h
		} else if _, _, cur := c.key(&h.Row); b.stale(lu.Before(cur)) {
			continue
		}
		h.Row = *r
		changed[id] = true
	}
	var out []O
	for _, id := range slices.Sorted(maps.Keys(c.held)) {
		h := c.held[id]
		_, parentID, _ := c.key(&h.Row)
		if !changed[id] && !h.Pending && !c.changedParents[parentID] {
			continue
		}
		parent := c.parents[parentID]
		if parent == nil {
			if changed[id] {
				p := missing("%s %d: no such %s yet", c.parentColumn, parentID, c.parentName)
				if err := b.reject(c.table, &h.Row, p); err != nil {
					return nil, err
				}
			}
			h.Pending = true
			continue
		}
		if h.Pending {
			b.res.Released++
		}
		h.Pending, h.Loaded = false, true
		out = append(out, build(&h.Row, parent))
	}
	return out, nil
}

// The other dimensions stream: the state keeps only their ids.

func (b *batch) currencies(im *lake.Manifest) error {
	return streamDim[currencyVersion](b, im, "currency", func(c *totesys.Currency) (int32, time.Time) { return c.CurrencyID, c.LastUpdated },
		func(c *totesys.Currency) (star.DimCurrency, *problem) {
			row, known, p := dimCurrency(c)
			if p == nil && !known {
				b.log.Warn("currency code is not a current ISO 4217 code; its name is the code",
					"currency_id", c.CurrencyID, "currency_code", c.CurrencyCode, "batch", b.res.Batch)
			}
			return row, p
		}, b.dimCurrency, b.st.Currencies)
}

func (b *batch) designs(im *lake.Manifest) error {
	return streamDim[designVersion](b, im, "design", func(d *totesys.Design) (int32, time.Time) { return d.DesignID, d.LastUpdated },
		dimDesign, b.dimDesign, b.st.Designs)
}

func (b *batch) paymentTypes(im *lake.Manifest) error {
	return streamDim[paymentTypeVersion](b, im, "payment_type", func(p *totesys.PaymentType) (int32, time.Time) { return p.PaymentTypeID, p.LastUpdated },
		dimPaymentType, b.dimPaymentType, b.st.PaymentTypes)
}

func (b *batch) transactions(im *lake.Manifest) error {
	return streamDim[transactionVersion](b, im, "transaction", func(t *totesys.Transaction) (int32, time.Time) { return t.TransactionID, t.LastUpdated },
		dimTransaction, b.dimTransaction, b.st.Transactions)
}

// streamDim streams a dimension table's rows into its object, chunk by
// chunk, and adds their ids to set. A dimension object holds one row per
// id: should the batch hold several versions of an id, a first pass finds
// them and only the current one is kept (keeper).
func streamDim[K versioned, S, D any](b *batch, im *lake.Manifest, table string, version func(*S) (int32, time.Time),
	conv func(*S) (D, *problem), out *output[D], set *idSet) error {
	src, err := b.openIngested(im, table)
	if err != nil || src == nil {
		return err
	}
	defer src.Close()
	keep, err := keeper[K](b, src, version)
	if err != nil {
		return err
	}
	buf := make([]D, 0, chunk)
	return readSource(b.ctx, src, func(rows []S) error {
		buf = buf[:0]
		for i := range rows {
			r := &rows[i]
			id, lu := version(r)
			if !keep(id, lu) {
				continue
			}
			d, p := conv(r)
			if p != nil {
				if err := b.reject(table, r, p); err != nil {
					return err
				}
				continue
			}
			set.add(id)
			buf = append(buf, d)
		}
		return write(out, buf)
	}, b.rejecter(table))
}

// keeper returns whether to keep a row of src, read in order, as its id's
// current version: every row when each id is there once; else, of an id's
// rows, the first with the newest last_updated, or in a capture batch the
// last in commit order.
func keeper[K versioned, S any](b *batch, src *ingested, version func(*S) (int32, time.Time)) (func(int32, time.Time) bool, error) {
	dup, err := duplicates[K](b.ctx, src)
	if err != nil || dup == nil {
		return func(int32, time.Time) bool { return true }, err
	}
	if b.capture {
		// The rows of an id that reach the stream, counted by a pass that
		// reads them exactly as the stream will: the last is kept.
		left := map[int32]int{}
		err := readSource(b.ctx, quiet(src), func(rows []S) error {
			for i := range rows {
				if id, _ := version(&rows[i]); dup.has(id) {
					left[id]++
				}
			}
			return nil
		}, skipRow)
		return func(id int32, _ time.Time) bool {
			if !dup.has(id) {
				return true
			}
			left[id]--
			return left[id] == 0
		}, err
	}
	newest, err := newestOf[K](b.ctx, src, dup)
	emitted := newIDSet()
	return func(id int32, lu time.Time) bool {
		keep, ok := newest[id]
		if !ok {
			return true
		}
		if !lu.Equal(keep) || emitted.has(id) {
			return false
		}
		emitted.add(id)
		return true
	}, err
}

// versioned is a row's id and last_updated, read alone: the first pass of
// streamDim decodes only these two columns.
type versioned interface {
	version() (int32, time.Time)
}

type currencyVersion struct {
	ID          int32     `parquet:"currency_id"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

type designVersion struct {
	ID          int32     `parquet:"design_id"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

type paymentTypeVersion struct {
	ID          int32     `parquet:"payment_type_id"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

type transactionVersion struct {
	ID          int32     `parquet:"transaction_id"`
	LastUpdated time.Time `parquet:"last_updated,timestamp(microsecond)"`
}

func (v currencyVersion) version() (int32, time.Time)    { return v.ID, v.LastUpdated }
func (v designVersion) version() (int32, time.Time)      { return v.ID, v.LastUpdated }
func (v paymentTypeVersion) version() (int32, time.Time) { return v.ID, v.LastUpdated }
func (v transactionVersion) version() (int32, time.Time) { return v.ID, v.LastUpdated }

// quiet is src for a pass that only looks: its rows are counted once, by
// the pass that keeps them.
func quiet(src *ingested) *ingested {
	probe := *src
	probe.count = nil
	return &probe
}

// duplicates returns the ids src holds more than once; nil when every id
// is there once. A row whose id or last_updated cannot be read exactly is
// skipped here: the pass that reads the whole rows rejects it.
func duplicates[K versioned](ctx context.Context, src *ingested) (*idSet, error) {
	seen, dup := newIDSet(), newIDSet()
	err := readSource(ctx, quiet(src), func(rows []K) error {
		for i := range rows {
			id, _ := rows[i].version()
			if id <= 0 {
				continue
			}
			if seen.has(id) {
				dup.add(id)
			}
			seen.add(id)
		}
		return nil
	}, skipRow)
	if err != nil || dup.len() == 0 {
		return nil, err
	}
	return dup, nil
}

// newestOf returns, for the ids of dup, the newest last_updated src holds.
func newestOf[K versioned](ctx context.Context, src *ingested, dup *idSet) (map[int32]time.Time, error) {
	newest := map[int32]time.Time{}
	err := readSource(ctx, quiet(src), func(rows []K) error {
		for i := range rows {
			id, lu := rows[i].version()
			if old, ok := newest[id]; dup.has(id) && (!ok || lu.After(old)) {
				newest[id] = lu
			}
		}
		return nil
	}, skipRow)
	return newest, err
}

// retryParked tries the parked fact rows again, now that the batch's
// dimensions are in: those whose references have arrived are released.
func (b *batch) retryParked(*lake.Manifest) error {
	parked := b.st.Parked
	b.st.Parked = nil
	for _, p := range parked {
		var err error
		var released bool
		switch p.Table {
		case "sales_order":
			released, err = retry(b, p, b.facts.salesOrder, b.factSalesOrder)
		case "purchase_order":
			released, err = retry(b, p, b.facts.purchaseOrder, b.factPurchase)
		case "payment":
			released, err = retry(b, p, b.facts.payment, b.factPayment)
		default:
			err = errkind.Wrap(errkind.Internal, fmt.Errorf("parked row of unknown table %q", p.Table))
		}
		if err != nil {
			return err
		}
		if released {
			b.res.Released++
		}
	}
	return nil
}

// retry transforms parked row p again: it is released, parked again (still
// missing a reference) or, should its values now fail, rejected for good.
func retry[S, F any](b *batch, p parkedRow, conv func(*S) (F, *problem), out *output[F]) (bool, error) {
	var r S
	if err := json.Unmarshal(p.Row, &r); err != nil {
		return false, errkind.Wrap(errkind.Internal, fmt.Errorf("parked %s row: %w", p.Table, err))
	}
	f, prob := conv(&r)
	switch {
	case prob == nil:
		return true, write(out, []F{f})
	case prob.kind == missingRef:
		p.Reason = prob.reason
		b.st.Parked = append(b.st.Parked, p)
		return false, nil
	default:
		return false, b.reject(p.Table, &r, prob)
	}
}

// Facts: streamed chunk by chunk.

func (b *batch) salesOrders(im *lake.Manifest) error {
	return streamFacts(b, im, "sales_order", b.facts.salesOrder, b.factSalesOrder)
}

func (b *batch) purchaseOrders(im *lake.Manifest) error {
	return streamFacts(b, im, "purchase_order", b.facts.purchaseOrder, b.factPurchase)
}

func (b *batch) payments(im *lake.Manifest) error {
	return streamFacts(b, im, "payment", b.facts.payment, b.factPayment)
}

func streamFacts[S, F any](b *batch, im *lake.Manifest, table string, conv func(*S) (F, *problem), out *output[F]) error {
	src, err := b.openIngested(im, table)
	if err != nil || src == nil {
		return err
	}
	defer src.Close()
	buf := make([]F, 0, chunk)
	return readSource(b.ctx, src, func(rows []S) error {
		buf = buf[:0]
		for i := range rows {
			f, p := conv(&rows[i])
			if p != nil {
				if err := b.rejectFact(table, &rows[i], p); err != nil {
					return err
				}
				continue
			}
			buf = append(buf, f)
		}
		return write(out, buf)
	}, b.rejecter(table))
}
