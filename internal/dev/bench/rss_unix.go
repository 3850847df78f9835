//go:build unix

package bench

import (
	"os"
	"runtime"
	"syscall"
)

// peakRSS returns the peak resident set size, in bytes, of an exited child
// process, from the resource usage wait4 reported for it (0 when unknown).
func peakRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return 0
	}
	kb := int64(ru.Maxrss) //nolint:unconvert // an int32 on 32-bit systems
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return kb // bytes there, in fact
	}
	return kb * 1024 // KiB on Linux and the BSDs
}
