package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
)

// runStage runs one stage the way run, the demo and the Lambda do: opened
// with only what it uses, through the pipeline's one path (start and end
// lines, the failure's one ERROR line with its kind), its result printed
// once. A non-zero deadline stops it at the first batch boundary past it.
// A signal stops it after the batch under way, and it exits 130
// (graceful, interrupted).
func runStage(cmd *cobra.Command, c config.Config, name string, deadline time.Time) error {
	ctx, stop := graceful(cmd.Context())
	p, err := pipeline.OpenStage(ctx, c, slog.Default(), name)
	if err != nil {
		return configFailure(name, err)
	}
	defer func() { _ = p.Close() }()
	p.Deadline, p.Progress, p.Quiet = deadline, cmd.ErrOrStderr(), humanLog
	st, err := p.Stage(name)
	if err != nil {
		return configFailure(name, err)
	}
	r := &pipeline.Runner{Logger: slog.Default(), Quiet: humanLog, Stop: stop, Observers: []pipeline.Observer{printer{cmd.OutOrStdout()}}}
	_, err = r.Run(ctx, st)
	return interrupted(cmd.Context(), err)
}

// printer prints each stage's result as it is done.
type printer struct{ w io.Writer }

func (p printer) StageDone(_ context.Context, r pipeline.Report)     { r.Write(p.w) }
func (p printer) StageFailed(context.Context, string, string, error) {}
