// Package pgserver starts throwaway PostgreSQL servers from the machine's
// own binaries, for tests, the demo and the benchmarks.
//
// A server lives in a directory of its own, listens on 127.0.0.1 and a
// socket in that directory, trusts local connections and is tuned for speed
// over durability (fsync off). When the caller is root the server runs as the
// unprivileged user nobody, since PostgreSQL refuses to run as root.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the name of the server's superuser role.
const Superuser = "postgres"

// Server is a running throwaway PostgreSQL server.
type Server struct {
	// Dir holds the data directory (Dir/data) and the log (Dir/postgres.log).
	Dir  string
	Port int
	bin  string
	cred *syscall.Credential
}

// Options tune Start.
type Options struct {
	// Dir is where the server keeps its files; a new temporary directory
	// when empty. An existing data directory in it is reused.
	Dir string
	// Port to listen on; a free one when zero.
	Port int
	// Settings are server settings (-c name=value) beside the defaults,
	// e.g. wal_level=logical; sorted by name on the command line.
	Settings map[string]string
	// CertPEM and KeyPEM, when set, turn TLS on (ssl=on) with this server
	// certificate and its private key; clients may still connect without
	// TLS.
	CertPEM, KeyPEM []byte
}

// BinDir finds the directory holding initdb, pg_ctl and postgres: the one
// of initdb on PATH, else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found (initdb): install them, e.g. apt-get install postgresql")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start initialises (when needed) and starts a server.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: opts.Dir, Port: opts.Port, bin: bin}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "sandstone-pg-"); err != nil {
			return nil, fmt.Errorf("pgserver: temp dir: %w", err)
		}
	} else if err := os.MkdirAll(s.Dir, 0o755); err != nil { // #nosec G301 -- the server's user must reach it
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return nil, err
	}
	tlsOpt, err := s.writeTLS(opts)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		s.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		if err := chownTree(s.Dir, 65534, 65534); err != nil {
			return nil, err
		}
	}
	if s.Port == 0 {
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(s.dataDir(), "PG_VERSION")); err != nil {
		if err := s.run(ctx, "initdb", "-D", s.dataDir(), "-U", Superuser, "--auth=trust",
			"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
			return nil, err
		}
	}
	opt := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "+
		"-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB -c timezone=UTC "+
		"-c log_timezone=UTC -c max_wal_size=4GB", s.Port, s.Dir) + tlsOpt
	for _, k := range slices.Sorted(maps.Keys(opts.Settings)) {
		opt += fmt.Sprintf(" -c %s=%s", k, opts.Settings[k])
	}
	// pg_ctl starts the server in the background and waits for it: killed
	// half-way by ctx, it would leave a server running that no one stops.
	// So it runs to its end (its own -t bounds it), and a server started
	// while ctx ended is stopped at once.
	if err := s.run(context.WithoutCancel(ctx), "pg_ctl", "-D", s.dataDir(), "-l", filepath.Join(s.Dir, "postgres.log"),
		"-o", opt, "-w", "-t", "60", "start"); err != nil {
		return nil, errors.Join(err, StopDir(s.Dir))
	}
	if ctx.Err() != nil {
		return nil, errors.Join(fmt.Errorf("pgserver: pg_ctl: %w", ctx.Err()), s.Stop())
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// writeTLS writes the certificate and key of opts into the server's
// directory (the key readable by its owner only, as PostgreSQL demands)
// and returns the server options that use them; "" without TLS.
func (s *Server) writeTLS(opts Options) (string, error) {
	if len(opts.CertPEM) == 0 {
		return "", nil
	}
	cert, key := filepath.Join(s.Dir, "server.crt"), filepath.Join(s.Dir, "server.key")
	if err := os.WriteFile(cert, opts.CertPEM, 0o644); err != nil { // #nosec G306 -- a public certificate
		return "", fmt.Errorf("pgserver: %w", err)
	}
	if err := os.WriteFile(key, opts.KeyPEM, 0o600); err != nil {
		return "", fmt.Errorf("pgserver: %w", err)
	}
	return fmt.Sprintf(" -c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s", cert, key), nil
}

func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...) // #nosec G204 -- binaries of the machine's PostgreSQL
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// A process group of its own: a Ctrl-C at the terminal reaches
	// Sandstone, which stops its servers itself, and not the servers
	// half-way through initdb.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	out, err := cmd.CombinedOutput()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("pgserver: %s: %w", name, ctx.Err())
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log")) // #nosec G304 -- our own log
		return fmt.Errorf("pgserver: %s: %w\n%s%s", name, err, out, tail(string(log), 2000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// URL returns the connection URL of database db.
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: fmt.Sprintf("127.0.0.1:%d", s.Port),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase creates database name (when missing) and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgserver: connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("pgserver: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("pgserver: create database %s: %w", name, err)
		}
	}
	return s.URL(name), nil
}

// AddPasswordRole creates the login role name with password (when
// missing) and makes the server ask it for its password over TCP
// (scram-sha-256), while every other role stays trusted: for tests of a
// wrong password. It returns the URL of database db as that role.
func (s *Server) AddPasswordRole(ctx context.Context, name, password, db string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgserver: connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("pgserver: %w", err)
	}
	if !exists {
		// The simple protocol has the driver quote the password as a literal.
		if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN PASSWORD $1",
			pgx.QueryExecModeSimpleProtocol, password); err != nil {
			return "", fmt.Errorf("pgserver: create role %s: %w", name, err)
		}
	}
	hba := filepath.Join(s.dataDir(), "pg_hba.conf")
	old, err := os.ReadFile(hba) // #nosec G304 -- our own server's file
	if err != nil {
		return "", fmt.Errorf("pgserver: %w", err)
	}
	// The first line that matches wins: this one, before the trust lines.
	line := fmt.Sprintf("host all %s 127.0.0.1/32 scram-sha-256\n", pgx.Identifier{name}.Sanitize())
	if err := os.WriteFile(hba, append([]byte(line), old...), 0o600); err != nil { // #nosec G703 -- our own server's file
		return "", fmt.Errorf("pgserver: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return "", fmt.Errorf("pgserver: reload: %w", err)
	}
	as := func(pw, db string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(name, pw), Host: fmt.Sprintf("127.0.0.1:%d", s.Port),
			Path: "/" + db, RawQuery: "sslmode=disable"}
		return u.String()
	}
	// The server reloads in the background: wait until it asks.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := pgx.Connect(ctx, as(password+"-not", "postgres"))
		if err != nil {
			break
		}
		_ = c.Close(ctx)
		if time.Now().After(deadline) {
			return "", errors.New("pgserver: the server does not ask for the password after a reload")
		}
	}
	return as(password, db), nil
}

// Stop shuts the server down fast; its files stay.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.run(ctx, "pg_ctl", "-D", s.dataDir(), "-m", "fast", "-w", "stop")
}

// Running reports whether a server is running in dir (left by an earlier
// process, e.g. the demo), and its port.
func Running(dir string) (port int, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")) // #nosec G304 -- a path of ours
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return port, true
}

// ErrPortTaken is PortFree's error for a port something listens on.
var ErrPortTaken = errors.New("taken")

// PortFree fails with ErrPortTaken, naming the port, when port (non-zero)
// is taken on 127.0.0.1.
func PortFree(port int) error {
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d is %w (%w)", port, ErrPortTaken, err)
	}
	return l.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid) // #nosec G122 -- our own fresh directory
	})
}

// StopDir stops the server whose files are in dir, if one is running there.
func StopDir(dir string) error {
	if _, ok := Running(dir); !ok {
		return nil
	}
	bin, err := BinDir()
	if err != nil {
		return err
	}
	s := &Server{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		s.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	return s.Stop()
}

// Reachable reports whether the unprivileged user a server runs as (when
// the caller is root) can reach dir: every parent must be searchable by
// others. Always true for a caller who is not root.
func Reachable(dir string) bool {
	if os.Geteuid() != 0 {
		return true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil && st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}
