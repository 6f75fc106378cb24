package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/txswitch/txswitch/providers/sim"
)

func init() {
	register("sim-provider", "run a simulated PSP (HTTP) with a control endpoint and a ledger", runSimProvider)
}

func runSimProvider(args []string) error {
	fs := newFlags("sim-provider", "[--listen ADDR] [--name NAME] [--seed N]")
	listen := fs.String("listen", "127.0.0.1:7300", "address to listen on (not 7100: a node's default raft address)")
	name := fs.String("name", "psp_sim", "provider name (in logs and the ledger)")
	seed := fs.Uint64("seed", 1, "seed for latency and error draws (same seed, same draws)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel, false)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	srv := sim.New(sim.Config{Name: *name, Seed: *seed, Logger: log})
	addr, err := srv.Start(*listen)
	if err != nil {
		return fmt.Errorf("start simulated PSP: %w", err)
	}
	fmt.Printf("simulated PSP %s on http://%s (control: /control/behaviour, ledger: /ledger)\n", *name, addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
	return nil
}
