package main

import "github.com/spf13/cobra"

func newIngestCmd() *cobra.Command {
	return &cobra.Command{Use: "ingest", Short: "(not yet built)"}
}
