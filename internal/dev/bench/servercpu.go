package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// server reads, from /proc, the CPU time a local PostgreSQL server spent
// serving its clients: its postmaster's cutime and cstime, the user and
// system time of its children that ended. A connection's backend is such a
// child once the connection closed and the postmaster reaped it, so the
// difference across a client's run is the CPU the server spent serving it
// (plus any autovacuum worker that ended meanwhile). The zero server (no
// /proc, no local server) reads nothing.
type server struct{ pid int }

// localServer is the server whose directory is dir (holding
// data/postmaster.pid).
func localServer(dir string) server {
	if dir == "" {
		return server{}
	}
	data, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")) // #nosec G304 -- the sandbox's own server
	if err != nil {
		return server{}
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return server{}
	}
	return server{pid: pid}
}

// proc reads the postmaster's /proc file name.
func (s server) proc(name string) (string, bool) {
	if s.pid <= 0 {
		return "", false
	}
	p := "/proc/" + strconv.Itoa(s.pid) + "/" + name
	data, err := os.ReadFile(p) // #nosec G304 G703 -- a /proc path of a number
	return string(data), err == nil
}

// cpu returns the CPU time the server's ended children spent; ok is false
// when it cannot be read.
func (s server) cpu() (cpu time.Duration, ok bool) {
	stat, ok := s.proc("stat")
	if !ok {
		return 0, false
	}
	// After the command's closing parenthesis: state is field 3, cutime
	// and cstime fields 16 and 17 (proc(5)).
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 15 {
		return 0, false
	}
	var ticks int64
	for _, v := range f[13:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, true
}

// children returns the pids of the postmaster's living children (nil when
// they cannot be read).
func (s server) children() map[string]bool {
	list, ok := s.proc("task/" + strconv.Itoa(s.pid) + "/children")
	if !ok {
		return nil
	}
	out := map[string]bool{}
	for _, pid := range strings.Fields(list) {
		out[pid] = true
	}
	return out
}

// settle waits, up to limit, until the server has no child it did not have
// in before: the backends of a client that exited have ended and been
// reaped, and their CPU time counted.
func (s server) settle(before map[string]bool, limit time.Duration) {
	if before == nil {
		return
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		now := s.children()
		if now == nil {
			return
		}
		fresh := false
		for pid := range now {
			if !before[pid] {
				fresh = true
				break
			}
		}
		if !fresh {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
