package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/txswitch/txswitch/storage/central"
)

func TestPrintMigrations(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		st      []central.MigrationState
		want    []string
		wantErr bool
	}{
		{"pending", []central.MigrationState{{Version: 1, Name: "init", Known: true, ChecksumOK: true}},
			[]string{"0001", "init", "pending", "1 pending"}, false},
		{"applied and newer", []central.MigrationState{
			{Version: 1, Name: "init", Known: true, ChecksumOK: true, Applied: &at},
			{Version: 7, Name: "next", ChecksumOK: true, Applied: &at}},
			[]string{"applied 2026-11-30T01:00:00Z", "by a newer release", "0 pending"}, false},
		{"edited", []central.MigrationState{{Version: 1, Name: "init", Known: true, Applied: &at}},
			[]string{"was edited"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := printMigrations(&b, tc.st, false)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
