package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath)) // the binary sandstoneBinary built
	}
	os.Exit(code)
}
