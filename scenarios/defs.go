package scenarios

import "embed"

// Defs holds the shipped scenario files (defs/*.yaml), embedded so the
// binary runs them without the source tree.
//
//go:embed defs/*.yaml
var Defs embed.FS

// LoadDefault loads the shipped scenarios.
func LoadDefault() ([]Scenario, error) { return Load(Defs, "defs") }
