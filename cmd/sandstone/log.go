package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/sandstone-data/sandstone/internal/base/logging"
)

// The environment variables for the log flags.
const (
	envLogFormat = "SANDSTONE_LOG_FORMAT"
	envLogLevel  = "SANDSTONE_LOG_LEVEL"
)

// humanLog is set when the log is text for a person (a terminal, or
// --log-format text): the printed results then say what the stages' start
// and end lines would.
var humanLog bool

// addLogFlags gives root the persistent --log-format and --log-level flags
// and installs the redacting slog default logger, on the command's stderr
// (os.Stderr unless a test or execute says otherwise), before any
// command runs.
func addLogFlags(root *cobra.Command) {
	format := logEnvOr(envLogFormat, logging.FormatAuto)
	level := logEnvOr(envLogLevel, "info")
	pf := root.PersistentFlags()
	pf.StringVar(&format, "log-format", format,
		"log format: auto (text on a terminal, JSON lines otherwise), json or text ($"+envLogFormat+")")
	pf.StringVar(&level, "log-level", level, "log level: debug, info, warn or error ($"+envLogLevel+")")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return installLogger(cmd, format, level)
	}
	// A flag that cannot be parsed is a setting that cannot be used: the
	// one ERROR line of kind config_invalid that a bad variable gets, in
	// the log format asked for when that much could be read (the flags
	// are parsed before any command's PreRun).
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if installLogger(cmd, format, level) != nil {
			_ = installLogger(cmd, logging.FormatAuto, "info")
		}
		return configFailure(cmd.Name(), err)
	})
}

// installLogger installs the redacting default logger on cmd's stderr.
func installLogger(cmd *cobra.Command, format, level string) error {
	f, err := logging.ParseFormat(format)
	if err != nil {
		return err
	}
	l, err := logging.ParseLevel(level)
	if err != nil {
		return err
	}
	slog.SetDefault(logging.New(cmd.ErrOrStderr(), f, l))
	humanLog = logging.Text(cmd.ErrOrStderr(), f)
	return nil
}

// logEnvOr returns the environment variable name, or def when it is unset.
func logEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
