package scenarios

import (
	"os"
	"testing"
)

// TestMain removes the txswitch binary the process tier built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	removeBuiltBinary()
	ShutdownCentral() // no PostgreSQL outlives the test binary
	os.Exit(code)
}
