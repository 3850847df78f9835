// Package sandbox sets up a whole Sandstone installation on one machine
// under one directory: a throwaway totesys source server, a throwaway
// warehouse server and the two buckets. The demo and the benchmark use it.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/dev/pgserver"
)

// Sandbox is a running installation.
type Sandbox struct {
	// Dir holds the buckets (and the servers, when reachable).
	Dir       string
	Source    *pgserver.Server
	Warehouse *pgserver.Server
	// Config points the pipeline at the servers and buckets.
	Config config.Config
}

// serverDirs are where the two servers live for a sandbox in dir: inside it
// when the server's user can reach it, else under the system's temp dir.
func serverDirs(dir string) (source, warehouse string) {
	base := filepath.Join(dir, "pg")
	if !pgserver.Reachable(base) {
		abs, _ := filepath.Abs(dir)
		base = filepath.Join(os.TempDir(), "sandstone-pg-"+fmt.Sprintf("%x", hash(abs)))
	}
	return filepath.Join(base, "source"), filepath.Join(base, "warehouse")
}

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// Ports are the servers' ports; zero picks a free one.
type Ports struct {
	Source    int `json:"source"`
	Warehouse int `json:"warehouse"`
}

// portsFile keeps, in a sandbox's dir, the ports its servers listen on.
const portsFile = "ports.json"

// SavedPorts returns the ports the last sandbox in dir listened on, zero
// when there was none (or it was cleaned away).
func SavedPorts(dir string) Ports {
	var p Ports
	if b, err := os.ReadFile(filepath.Join(dir, portsFile)); err == nil { // #nosec G304 -- a file of ours
		_ = json.Unmarshal(b, &p)
	}
	return p
}

// savePorts keeps ports in dir, for SavedPorts.
func savePorts(dir string, ports Ports) error {
	b, err := json.Marshal(ports)
	if err == nil {
		err = os.MkdirAll(dir, 0o755) // #nosec G301 -- as Start makes it
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, portsFile), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("sandbox: keep the ports: %w", err)
	}
	return nil
}

// Start removes whatever an earlier sandbox left in dir, then starts the two
// servers on free ports and creates the databases "totesys" and "warehouse".
func Start(ctx context.Context, dir string) (*Sandbox, error) {
	return StartOn(ctx, dir, Ports{})
}

// StartOn is Start with the servers on the given ports (zero: a free one).
// A port that is taken fails it at once, naming the port. The ports are
// kept in dir (SavedPorts) until Clean.
func StartOn(ctx context.Context, dir string, ports Ports) (*Sandbox, error) {
	return StartWith(ctx, dir, Options{Ports: ports})
}

// Options shape StartWith.
type Options struct {
	// Ports are the servers' ports.
	Ports Ports
	// SourceSettings are the source server's settings beside the defaults
	// (pgserver.Options.Settings), e.g. wal_level=logical for log-based
	// capture.
	SourceSettings map[string]string
}

// StartWith is StartOn with the source server's settings.
func StartWith(ctx context.Context, dir string, opts Options) (*Sandbox, error) {
	ports := opts.Ports
	if err := Clean(dir); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		port int
	}{{"source", ports.Source}, {"warehouse", ports.Warehouse}} {
		if err := pgserver.PortFree(p.port); err != nil {
			_ = savePorts(dir, ports) // still the sandbox's, for the next try
			return nil, fmt.Errorf("sandbox: the %s server's port: %w", p.name, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "pg"), 0o755); err != nil { // #nosec G301 -- the servers' user must reach it
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{Dir: abs}
	srcDir, whDir := serverDirs(abs)
	if s.Source, err = pgserver.Start(ctx, pgserver.Options{Dir: srcDir, Port: ports.Source, Settings: opts.SourceSettings}); err != nil {
		return nil, fmt.Errorf("sandbox: source server: %w", err)
	}
	if s.Warehouse, err = pgserver.Start(ctx, pgserver.Options{Dir: whDir, Port: ports.Warehouse}); err != nil {
		_ = s.Source.Stop()
		return nil, fmt.Errorf("sandbox: warehouse server: %w", err)
	}
	if err := savePorts(abs, Ports{Source: s.Source.Port, Warehouse: s.Warehouse.Port}); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	src, err := s.Source.CreateDatabase(ctx, "totesys")
	if err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	wh, err := s.Warehouse.CreateDatabase(ctx, "warehouse")
	if err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	s.Config = config.Config{
		SourceURL:       src,
		WarehouseURL:    wh,
		IngestBucket:    "file://" + filepath.Join(abs, "ingested"),
		ProcessedBucket: "file://" + filepath.Join(abs, "processed"),
		WarehouseSchema: config.DefaultSchema,
		Lookback:        config.DefaultLookback,
	}
	return s, nil
}

// Stop stops both servers; their files stay.
func (s *Sandbox) Stop() error {
	return errors.Join(s.Source.Stop(), s.Warehouse.Stop())
}

// Clean stops the servers of a sandbox in dir and removes all its files.
func Clean(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	src, wh := serverDirs(abs)
	if err := errors.Join(pgserver.StopDir(src), pgserver.StopDir(wh)); err != nil {
		return fmt.Errorf("sandbox: stop servers: %w", err)
	}
	if err := os.RemoveAll(filepath.Dir(src)); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// Running reports whether a server of the sandbox in dir is running.
func Running(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	src, wh := serverDirs(abs)
	_, s := pgserver.Running(src)
	_, w := pgserver.Running(wh)
	return s || w
}
