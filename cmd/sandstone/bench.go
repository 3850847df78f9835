package main

import (
	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/dev/bench"
)

// benchLong is bench's help.
const benchLong = `Bench starts throwaway PostgreSQL servers for a source and a warehouse under
--dir, seeds a totesys source of --sales-orders sales orders (1,000,000 make
about 4.3 million rows), then measures, on the same servers:

  baseline      every source table copied with COPY ... TO STDOUT piped into
                COPY ... FROM STDIN (warehouse schema "baseline", dropped once
                measured), nothing else
  initial       ingest, transform and load into the empty warehouse: seconds,
                source rows/s and the peak RSS of each stage
  bounded       the initial load again, into schema "bounded" through buckets
                of its own, in batches of at most --bounded-batch-rows rows:
                ingest run until it lands nothing, then transform and load;
                its warehouse must be the initial pipeline's
  incremental   one cycle after --change-fraction of the sales orders and
                payments changed, with rows/s per stage
  floor         the incremental load's fact rows written again by COPY alone,
                every key and foreign key checked by PostgreSQL
  indexed       an index on last_updated built in every source table (totesys
                ships none, so each ingest reads every row), then another
                incremental cycle: what it costs when ingest reads only the
                changes (--indexed-cycle=false skips it)
  audit         sandstone audit --json against the two ingested batches:
                seconds and peak RSS, next to the initial ingest's; a clean
                pipeline must audit clean, and drift is told loudly
                ("audit_drift": true in the JSON)
  freshness     sandstone run --interval while the simulator writes: the delay
                from each source change (its last_updated) to its fact row

With --capture wal (or poll,wal: both side by side, on one source started with
wal_level=logical), the wal pipeline has buckets and a warehouse database
(warehouse_wal) of its own and measures:

  wal initial   the slot created with its snapshot, every row landed from it,
                transform and load, against the baseline
  wal cycle     the same 1 % change, then its cycle; its floor is the slot's
                changes decoded alone (pg_logical_slot_peek_binary_changes on a
                slot of its own) plus the fact rows' write; ingest seconds and
                source CPU per changed row
  wal freshness sandstone run --capture wal --interval 1s while
                --wal-freshness-changes sales orders are updated at
                --wal-freshness-rate a second
  hold-back     --hold-back-mb of WAL written to a table outside the
                publication, one ingest, then the WAL the slot holds back
  big           one transaction changing --big-transaction-rows sales orders,
                then a cycle of each capture: each stage's peak RSS

Every stage runs as a child process of this binary (the ingest, transform,
load, audit and run commands), so its time and peak memory are its own. It
prints a table, with the targets met or missed; --json prints one JSON object
instead.
Everything under --dir is removed at the end unless --keep.

Needs the PostgreSQL server binaries (Debian: apt-get install postgresql).`

func newBenchCmd() *cobra.Command {
	var (
		opts   bench.Options
		asJSON bool
		clean  bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, memory and freshness against a plain COPY baseline",
		Long:  benchLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if clean {
				return cleanSandbox(cmd, opts.Dir)
			}
			opts.Progress = cmd.ErrOrStderr()
			if opts.FreshnessChanges == 0 {
				opts.FreshnessChanges = -1 // skip the phase
			}
			if opts.BoundedBatchRows == 0 {
				opts.BoundedBatchRows = -1 // skip the phase
			}
			if opts.WALFreshnessChanges == 0 {
				opts.WALFreshnessChanges = -1
			}
			if opts.HoldBackMB == 0 {
				opts.HoldBackMB = -1
			}
			if opts.BigTransactionRows == 0 {
				opts.BigTransactionRows = -1
			}
			res, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				return res.WriteJSON(cmd.OutOrStdout())
			}
			return res.WriteTable(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", bench.DefaultDir, "directory for the benchmark's servers and buckets (emptied first)")
	f.IntVar(&opts.SalesOrders, "sales-orders", bench.DefaultSalesOrders, "scale of the seeded source, in sales orders")
	f.Int64Var(&opts.RandomSeed, "random-seed", 1, "seed of the source's random data")
	f.Float64Var(&opts.ChangeFraction, "change-fraction", bench.DefaultChangeFraction, "fraction of sales orders and payments changed before the incremental cycle")
	f.IntVar(&opts.FreshnessChanges, "freshness-changes", bench.DefaultFreshnessChanges, "source changes the freshness phase measures (0 skips it)")
	f.DurationVar(&opts.FreshnessInterval, "freshness-interval", bench.DefaultFreshnessInterval, "interval of sandstone run in the freshness phase")
	f.DurationVar(&opts.FreshnessTimeout, "freshness-timeout", bench.DefaultFreshnessTimeout, "time limit of the freshness phase")
	f.DurationVar(&opts.Poll, "poll", bench.DefaultPoll, "how often the freshness phase looks for the changes in the warehouse")
	f.Int64Var(&opts.BoundedBatchRows, "bounded-batch-rows", bench.DefaultBoundedBatchRows, "bound of the initial load in bounded batches (0 skips it)")
	f.BoolVar(&opts.IndexedCycle, "indexed-cycle", true, "measure a second incremental cycle with an index on last_updated in every source table")
	f.StringSliceVar(&opts.Captures, "capture", []string{"poll"}, "capture modes to measure side by side: poll, wal, or poll,wal")
	f.DurationVar(&opts.WALFreshnessInterval, "wal-freshness-interval", bench.DefaultWALFreshnessInterval, "interval of sandstone run --capture wal in the wal freshness phase")
	f.BoolVar(&opts.WALFollow, "wal-follow", true, "run sandstone run --capture wal with --follow in the wal freshness phase (false: every --wal-freshness-interval)")
	f.IntVar(&opts.WALFreshnessChanges, "wal-freshness-changes", bench.DefaultWALFreshnessChanges, "source changes the wal freshness phase measures (0 skips it)")
	f.Float64Var(&opts.WALFreshnessRate, "wal-freshness-rate", bench.DefaultWALFreshnessRate, "sales orders updated a second in the wal freshness phase")
	f.IntVar(&opts.HoldBackMB, "hold-back-mb", bench.DefaultHoldBackMB, "MB of WAL written outside the publication before the hold-back phase's ingest (0 skips it)")
	f.IntVar(&opts.BigTransactionRows, "big-transaction-rows", bench.DefaultBigTransactionRows, "sales orders one transaction changes before the big-transaction cycles, run with the wal (0 skips them)")
	f.StringVar(&opts.ProfileDir, "profile-dir", "", "write CPU and allocation profiles (pprof) of every stage run here")
	f.BoolVar(&opts.Keep, "keep", false, "leave the servers running and the files in --dir")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	f.BoolVar(&clean, "clean", false, "stop the servers of a kept benchmark and remove --dir")
	return cmd
}
