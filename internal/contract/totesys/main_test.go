package totesys_test

import (
	"os"
	"testing"

	"github.com/sandstone-data/sandstone/internal/dev/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
