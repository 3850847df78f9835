//go:build !unix

package bench

import "os"

// peakRSS is unknown where the system reports no resource usage.
func peakRSS(*os.ProcessState) int64 { return 0 }
