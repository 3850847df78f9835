// Command sandstone moves the totesys database into a star-schema
// warehouse: ingest, transform and load, once or on a schedule.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/base/logging"
)

func main() {
	ctx, release := withSignals(context.Background())
	code := execute(ctx, os.Args[1:], os.Stderr)
	release()
	os.Exit(code)
}

// execute runs the command line args and returns the exit code; errors go
// to stderr, without passwords.
func execute(ctx context.Context, args []string, stderr io.Writer) int {
	return executeRoot(ctx, newRoot(), args, stderr)
}

// executeRoot is execute with the command tree root (whose stdout the
// caller may have set); logs go to stderr too.
func executeRoot(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintln(stderr, "sandstone:", config.Redact(err.Error()))
		var c codedError
		if errors.As(err, &c) {
			return c.code
		}
		return 1
	}
	return 0
}

// codedError is an error that exits with its own code.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// exitCode makes err exit with code.
func exitCode(code int, err error) error { return codedError{code, err} }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "sandstone",
		Short: "Move the totesys database into a star-schema warehouse, incrementally",
		Long: `Sandstone moves the totesys OLTP database into a star-schema warehouse:

  ingest     new and changed source rows -> ingestion bucket (Parquet + manifest)
  transform  ingested batches            -> star-schema rows in the processed bucket
  load       processed batches           -> the warehouse (PostgreSQL)

Configuration comes from flags, or from the SANDSTONE_* environment variables
(flags win): SANDSTONE_SOURCE_URL, SANDSTONE_WAREHOUSE_URL,
SANDSTONE_INGEST_BUCKET, SANDSTONE_PROCESSED_BUCKET, SANDSTONE_WAREHOUSE_SCHEMA,
SANDSTONE_LOOKBACK, SANDSTONE_CAPTURE, SANDSTONE_SLOT, SANDSTONE_PUBLICATION.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildInfo(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	addLogFlags(root)
	addProfileFlags(root)
	root.AddCommand(
		newSeedCmd(), newSimulateCmd(),
		newIngestCmd(), newTransformCmd(), newLoadCmd(),
		newRunCmd(), newDemoCmd(), newStatusCmd(), newAuditCmd(), newRejectsCmd(), newBenchCmd(), newDropSlotCmd(), newVersionCmd(),
	)
	return root
}

// configFlags binds the pipeline configuration to a command's flags, with
// the environment as defaults.
type configFlags struct{ config.Config }

// need is a set of the settings a command declares it uses: bind gives it
// their flags and no others.
type need uint8

// The settings a command may need.
const (
	needSource          need = 1 << iota // --source, --lookback
	needWarehouse                        // --warehouse, --warehouse-schema
	needIngestBucket                     // --ingest-bucket
	needProcessedBucket                  // --processed-bucket
	needBatch                            // --max-batch-rows: a command that lands batches
	needCapture                          // --capture, --slot, --publication: a command that ingests

	// needPipeline is every setting of the three stages.
	needPipeline = needSource | needWarehouse | needIngestBucket | needProcessedBucket
)

// bind gives cmd the flags of the settings it needs, each defaulting to its
// environment variable, and a PreRunE refusing a value that cannot be used.
func (c *configFlags) bind(cmd *cobra.Command, needs need) {
	env, err := config.FromEnv()
	c.Config = env
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if err == nil && needs&needSource != 0 && c.Lookback <= 0 {
			err = fmt.Errorf("--lookback %s: want a positive duration such as 10m", c.Lookback)
		}
		if err == nil && c.MaxBatchRows < 0 {
			err = fmt.Errorf("--max-batch-rows %d: want a whole number of rows, 0 for no bound", c.MaxBatchRows)
		}
		if err == nil && needs&needCapture != 0 {
			err = c.checkCapture()
		}
		return configFailure(cmd.Name(), err)
	}
	f := cmd.Flags()
	if needs&needSource != 0 {
		f.StringVar(&c.SourceURL, "source", env.SourceURL, "totesys PostgreSQL URL ($"+config.EnvSource+")")
		f.DurationVar(&c.Lookback, "lookback", env.Lookback, "how long after its last_updated a row may still commit and be caught ($"+config.EnvLookback+")")
	}
	if needs&needWarehouse != 0 {
		f.StringVar(&c.WarehouseURL, "warehouse", env.WarehouseURL, "warehouse PostgreSQL URL ($"+config.EnvWarehouse+")")
		f.StringVar(&c.WarehouseSchema, "warehouse-schema", env.WarehouseSchema, "warehouse PostgreSQL schema ($"+config.EnvWarehouseSchema+")")
	}
	if needs&needIngestBucket != 0 {
		f.StringVar(&c.IngestBucket, "ingest-bucket", env.IngestBucket, "ingestion bucket: file:///dir, a directory, s3://name?region=..., mem:// ($"+config.EnvIngestBucket+")")
	}
	if needs&needProcessedBucket != 0 {
		f.StringVar(&c.ProcessedBucket, "processed-bucket", env.ProcessedBucket, "processed bucket, as --ingest-bucket ($"+config.EnvProcessedBucket+")")
	}
	if needs&needBatch != 0 {
		f.Int64Var(&c.MaxBatchRows, "max-batch-rows", env.MaxBatchRows,
			"most rows one ingest batch lands; more land in further batches, in the same run; 0 for no bound ($"+config.EnvMaxBatchRows+")")
	}
	if needs&needCapture != 0 {
		f.StringVar(&c.Capture, "capture", env.Capture, "how to read the source: poll (rows whose last_updated is new) or wal (every change, from the write-ahead log) ($"+config.EnvCapture+")")
		f.StringVar(&c.Slot, "slot", env.Slot, "replication slot of --capture wal; default sandstone_<source database> ($"+config.EnvSlot+")")
		f.StringVar(&c.Publication, "publication", env.Publication, "publication of --capture wal ($"+config.EnvPublication+")")
	}
}

// checkCapture refuses a --capture, --slot or --publication that cannot
// work, naming the flag.
func (c *configFlags) checkCapture() error {
	if err := config.CheckCapture(c.Capture); err != nil {
		return fmt.Errorf("--capture %q: %w", c.Capture, err)
	}
	if c.Slot != "" {
		if err := config.CheckSlot(c.Slot); err != nil {
			return fmt.Errorf("--slot %q: %w", c.Slot, err)
		}
	}
	if err := config.CheckPublication(c.Publication); err != nil {
		return fmt.Errorf("--publication %q: %w", c.Publication, err)
	}
	return nil
}

// configFailure marks err (when it carries no kind) as config_invalid and
// writes its one ERROR line for stage, as every failure has; nil stays nil.
func configFailure(stage string, err error) error {
	if err == nil {
		return nil
	}
	err = errkind.Default(errkind.ConfigInvalid, err)
	logging.Failure(slog.Default(), stage, "", err)
	return err
}

// require refuses an empty value of the setting given by flag or the
// environment variable env, naming both.
func require(flag, env, value string) error {
	if value == "" {
		return fmt.Errorf("%s is required: give the flag or set %s", flag, env)
	}
	return nil
}
