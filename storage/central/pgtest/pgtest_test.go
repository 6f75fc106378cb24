package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txswitch/txswitch/storage/central/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func query(t *testing.T, url string) (int, error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT 40 + 2").Scan(&n)
	return n, err
}

func TestStartGivesFreshDatabases(t *testing.T) {
	a, b := pgtest.Start(t), pgtest.Start(t)
	if a == b {
		t.Fatalf("two tests share a database: %s", a)
	}
	for _, u := range []string{a, b} {
		if n, err := query(t, u); err != nil || n != 42 {
			t.Fatalf("query %s: %d, %v", u, n, err)
		}
	}
}

func TestKillAndRestartKeepData(t *testing.T) {
	s := pgtest.NewServer(t)
	url := s.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE k(v int); INSERT INTO k VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	s.Kill()
	if _, err := query(t, url); err == nil {
		t.Fatal("query succeeded against a killed server")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM k").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after restart: v=%d err=%v", v, err)
	}
	s.Stop()
	if err := s.Restart(); err != nil {
		t.Fatalf("restart after stop: %v", err)
	}
}
