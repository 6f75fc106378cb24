// Command txswitch is the one binary of the payment switch: a cluster node,
// the local demo, the operator CLI, the simulated PSP, the benchmark and the
// scenario runner, as subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/txswitch/txswitch/cmd/cluster"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns an error to print; errUsage means the flags were wrong
// and the flag package has already said why.
type command struct {
	summary string
	run     func(args []string) error
}

var errUsage = errors.New("usage")

// commands is filled by each subcommand's file in an init func, so adding a
// subcommand touches one file.
var commands = map[string]command{}

func register(name, summary string, run func(args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "txswitch: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	// Every subcommand that runs nodes (node, demo, bench) wants it; the
	// others allocate too little to notice.
	cluster.TuneGC()
	if err := cmd.run(os.Args[2:]); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "txswitch %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("txswitch — a highly available payment transaction switch\n\nUsage: txswitch <command> [flags]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-14s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'txswitch <command> -h' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}

// newFlags returns a FlagSet that reports errors instead of exiting, so
// every subcommand fails the same way.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("txswitch "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: txswitch %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and maps flag errors onto errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}

// newLogger builds the process logger: JSON for machines (node), a console
// encoder for people (demo).
func newLogger(level string, console bool) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	if console {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	return cfg.Build()
}
