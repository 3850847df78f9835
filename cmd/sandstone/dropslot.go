package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/pipeline"
	"github.com/sandstone-data/sandstone/internal/stage/ingest"
)

func newDropSlotCmd() *cobra.Command {
	var c configFlags
	cmd := &cobra.Command{
		Use:   "drop-slot",
		Short: "Remove what --capture wal set up on the source: its replication slot, and its publication when Sandstone created it",
		Long: `drop-slot is the uninstall step of --capture wal, and the way back to the
poll for good. A replication slot keeps every WAL segment written since its
consumer last confirmed it: abandoned, it fills the source's disk (or, with
max_slot_wal_keep_size, is invalidated). drop-slot drops the slot, refusing
one a running pipeline reads, and the publication when Sandstone created it
(one a DBA made stays). The lake and the warehouse are left as they are; a
later --capture wal run starts again from a new slot and its snapshot.`,
		Example: `  sandstone drop-slot --source postgres://replicator@host/totesys
  sandstone drop-slot --source postgres://replicator@host/totesys --slot sandstone_totesys --publication sandstone`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require("--source", config.EnvSource, c.SourceURL); err != nil {
				return configFailure(pipeline.Ingest, err)
			}
			slot := c.Slot
			if slot == "" {
				slot = config.DefaultSlot(c.SourceURL)
			}
			d, err := ingest.DropCapture(cmd.Context(), c.SourceURL, slot, c.Publication)
			if err != nil {
				return configFailure(pipeline.Ingest, err)
			}
			out := cmd.OutOrStdout()
			say := map[bool]string{true: "dropped", false: "not found"}
			_, _ = fmt.Fprintf(out, "slot %s: %s\n", slot, say[d.Slot])
			switch {
			case d.Publication:
				_, _ = fmt.Fprintf(out, "publication %s: dropped\n", c.Publication)
			case d.KeptPublication:
				_, _ = fmt.Fprintf(out, "publication %s: kept (not created by Sandstone; DROP PUBLICATION it if nothing else reads it)\n", c.Publication)
			default:
				_, _ = fmt.Fprintf(out, "publication %s: not found\n", c.Publication)
			}
			return nil
		},
	}
	c.bind(cmd, needSource|needCapture)
	return cmd
}
