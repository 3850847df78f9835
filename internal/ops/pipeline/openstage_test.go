package pipeline

import (
	"context"
	"errors"
	"testing"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
)

// TestOpenStageOpensOnlyWhatTheStageUses: a Lambda function is given only
// its stage's buckets, and the other falls back to a default it cannot
// open. OpenStage opens only the stage's own; Open (the CLI) both.
func TestOpenStageOpensOnlyWhatTheStageUses(t *testing.T) {
	const broken = "nosuchscheme://x" // opening it fails
	for _, c := range []struct {
		stage             string
		ingest, processed string
		ingestOpen, procs bool
	}{
		{Ingest, "mem://", broken, true, false},
		{Transform, "mem://", "mem://", true, true},
		{Load, broken, "mem://", false, true},
	} {
		cfg := config.Config{IngestBucket: c.ingest, ProcessedBucket: c.processed}
		p, err := OpenStage(context.Background(), cfg, nil, c.stage)
		if err != nil {
			t.Fatalf("%s: %v", c.stage, err)
		}
		if (p.Ingest != nil) != c.ingestOpen || (p.Processed != nil) != c.procs {
			t.Errorf("%s: ingestion open %v, processed open %v", c.stage, p.Ingest != nil, p.Processed != nil)
		}
		// The other stages refuse to run on it, rather than panic.
		for _, other := range []string{Ingest, Transform, Load} {
			if other == c.stage {
				continue
			}
			s, _ := p.Stage(other)
			needsIngest, needsProcessed := other != Load, other != Ingest
			if (needsIngest && !c.ingestOpen) || (needsProcessed && !c.procs) {
				if _, err := s.Run(context.Background(), Run{}); errkind.Of(err) != errkind.Internal {
					t.Errorf("%s opened, %s ran: %v", c.stage, other, err)
				}
			}
		}
		if _, _, err := p.Pending(context.Background()); c.stage != Transform && err == nil {
			t.Errorf("%s opened: Pending ran", c.stage)
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if c.ingest == broken || c.processed == broken {
			if _, err := Open(context.Background(), cfg, nil); errkind.Of(err) != errkind.ConfigInvalid {
				t.Errorf("Open with %+v: %v, want config_invalid", cfg, err)
			}
		}
	}
	if _, err := OpenStage(context.Background(), config.Config{}, nil, "audit"); err == nil || errors.Is(err, context.Canceled) {
		t.Error("OpenStage accepted an unknown stage")
	}
}
