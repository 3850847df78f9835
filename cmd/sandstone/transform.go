package main

import "github.com/spf13/cobra"

func newTransformCmd() *cobra.Command {
	return &cobra.Command{Use: "transform", Short: "(not yet built)"}
}
