package main

import "github.com/spf13/cobra"

func newLoadCmd() *cobra.Command {
	return &cobra.Command{Use: "load", Short: "(not yet built)"}
}
