package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/synth"
)

func newSimulateCmd() *cobra.Command {
	var (
		cf       configFlags
		interval time.Duration
		steps    int
		seed     int64
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Apply live activity to the totesys source: new orders, paid payments, changes",
		Long: `Simulate plays totesys's users: every --interval it applies one step of live
activity to the source, each kind of change in a source transaction of its
own, stamped with the source's clock in UTC: a few new sales and purchase
orders with their transactions and unpaid payments, payments marked paid, and
now and then a changed order, address or department, or a new design.

It runs until --steps are done (0: until interrupted with Ctrl-C).`,
		Example: `  sandstone simulate --source 'postgres:///totesys?host=/var/run/postgresql' --interval 2s
  sandstone simulate --steps 1   # one step, settings from SANDSTONE_*`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", config.EnvSource, cf.SourceURL); err != nil {
				return err
			}
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive, not %s", interval)
			}
			if steps < 0 {
				return fmt.Errorf("--steps must be 0 (no limit) or more, not %d", steps)
			}
			return simulate(cmd, cf.SourceURL, interval, steps, seed)
		},
	}
	cf.bind(cmd, needSource)
	f := cmd.Flags()
	if err := f.MarkHidden("lookback"); err != nil {
		panic(errors.Join(errors.New("simulate: the lookback flag is gone"), err))
	}
	f.DurationVar(&interval, "interval", synth.DefaultInterval, "time between two steps")
	f.IntVar(&steps, "steps", 0, "how many steps to apply (0: until interrupted)")
	f.Int64Var(&seed, "random-seed", synth.DefaultRandomSeed, "seed of the random activity")
	return cmd
}

func simulate(cmd *cobra.Command, url string, interval time.Duration, steps int, seed int64) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	rnd := rand.New(rand.NewPCG(uint64(seed), 0x51a7e)) // #nosec G404 G115 -- synthetic activity, any seed will do
	total := synth.Stats{}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for step := 1; steps == 0 || step <= steps; step++ {
		if step > 1 {
			select {
			case <-ctx.Done():
				_, _ = fmt.Fprintf(out, "stopped after %d steps: %s\n", step-1, total)
				return nil
			case <-ticker.C:
			}
		}
		stats, err := synth.Simulate(ctx, url, synth.TypicalStep(rnd), rnd)
		for k, v := range stats {
			total[k] += v
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				_, _ = fmt.Fprintf(out, "stopped after %d steps: %s\n", step-1, total)
				return nil
			}
			return fmt.Errorf("step %d: %w", step, err)
		}
		_, _ = fmt.Fprintf(out, "step %d at %s: %s\n", step, time.Now().UTC().Format("15:04:05"), stats)
	}
	_, _ = fmt.Fprintf(out, "done, %d steps: %s\n", steps, total)
	return nil
}
