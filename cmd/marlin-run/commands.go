package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
)

// command is one subcommand. To add one, create cmd_<name>.go with a
// constructor returning *command and add it to commands().
type command struct {
	// Name is the subcommand word; Usage the argument synopsis; Summary
	// a one-line description for the help listing.
	Name, Usage, Summary string
	// Job marks commands that take job files; they get --set and --workdir.
	Job bool
	// Flags declares the command's own flags (may be nil).
	Flags func(fs *flag.FlagSet)
	// Run executes the command with the positional arguments.
	Run func(ctx context.Context, app *app, args []string) error
}

// commands lists the subcommands in help order.
func commands() []*command {
	return []*command{
		runCommand(),
		planCommand(),
		statusCommand(),
		gcCommand(),
		validateCommand(),
		schemaCommand(),
		kindsCommand(),
		inspectCommand(),
		pplCommand(),
		generateCommand(),
		reportCommand(),
		versionCommand(),
	}
}

// app is what every command can use.
type app struct {
	Stdout, Stderr io.Writer
	Registry       *pipeline.Registry
	// set and workdir are the common job flags (--set, --workdir).
	set     multiFlag
	workdir string
	logFmt  string
	// logLevel is --log-level ("" picks warn on a terminal, where progress
	// bars show what info lines would, and info elsewhere).
	logLevel string
	// verbose (run -v) asks for a line per task event and debug logs.
	verbose bool
	// termWidth reports whether a writer is a terminal and its width
	// (terminalWidth; tests inject others).
	termWidth func(io.Writer) (cols int, isTTY bool)
}

// barsOK reports whether stderr is a terminal that can show progress
// bars: one that reports a width. A terminal of size 0x0 (CI runners,
// script(1), some `docker -t`) gets plain lines, as a pipe does; bars
// drawn at width 0 would show nothing.
func (a *app) barsOK() bool {
	f := a.termWidth
	if f == nil {
		f = terminalWidth
	}
	cols, tty := f(a.Stderr)
	return tty && cols > 0
}

// usageError makes the CLI print the command's usage and exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// jobFlags registers the flags shared by commands that load a job file.
func (a *app) jobFlags(fs *flag.FlagSet) {
	fs.Var(&a.set, "set", "override a job field before validation: `path=value` (repeatable); a stage by id or index, list elements by index, e.g. stages.quant.with.default.format=nvfp4 or stages.quant.with.rules[0].format=f16")
	fs.StringVar(&a.workdir, "workdir", "", "use `DIR` as the workdir instead of the job's")
}

// loadJob loads a job file with the common flags applied.
func (a *app) loadJob(path string) (*pipeline.Job, error) {
	return pipeline.Load(path, a.Registry, pipeline.LoadOptions{Set: a.set, Workdir: a.workdir})
}

// planJob loads the one job file args must name (with the common flags
// applied) and plans it.
func (a *app) planJob(ctx context.Context, args []string) (*pipeline.Job, *pipeline.Plan, error) {
	if len(args) != 1 {
		return nil, nil, usagef("want exactly one job file")
	}
	job, err := a.loadJob(args[0])
	if err != nil {
		return nil, nil, err
	}
	plan, err := pipeline.PlanJob(ctx, job, a.logger())
	if err != nil {
		return nil, nil, err
	}
	return job, plan, nil
}

// logger returns the structured logger for --log-format.
func (a *app) logger() *slog.Logger {
	level := slog.LevelInfo
	if a.logLevel != "" {
		_ = level.UnmarshalText([]byte(a.logLevel)) // validated in runCLI
	} else if a.verbose {
		level = slog.LevelDebug
	} else if a.logFmt != "json" && a.barsOK() {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if a.logFmt == "json" {
		return slog.New(slog.NewJSONHandler(a.Stderr, opts))
	}
	return slog.New(newLineHandler(a.Stderr, level))
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments ("run job.yaml --fresh").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runApp(ctx, args, &app{Stdout: stdout, Stderr: stderr, termWidth: terminalWidth})
}

// runApp runs the command line args with a's writers and terminal probe
// (the rest of a is filled in here).
func runApp(ctx context.Context, args []string, a *app) int {
	stdout, stderr := a.Stdout, a.Stderr
	reg, err := stages.NewRegistry()
	if err != nil {
		fmt.Fprintln(stderr, "marlin-run:", err)
		return 1
	}
	cmds := commands()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp(stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var cmd *command
	for _, c := range cmds {
		if c.Name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "marlin-run: unknown command %q\n\n", args[0])
		printHelp(stderr, cmds)
		return 2
	}
	a.Registry = reg
	fs := a.flagSet(cmd)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: marlin-run %s %s\n\n%s\n\nflags:\n", cmd.Name, cmd.Usage, cmd.Summary)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if a.logFmt != "text" && a.logFmt != "json" {
		fmt.Fprintf(stderr, "marlin-run %s: --log-format must be text or json\n", cmd.Name)
		return 2
	}
	if a.logLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(a.logLevel)); err != nil {
			fmt.Fprintf(stderr, "marlin-run %s: --log-level must be debug, info, warn or error\n", cmd.Name)
			return 2
		}
	}
	if err := cmd.Run(ctx, a, pos); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "marlin-run %s: %s\n", cmd.Name, ue.msg)
			fs.Usage()
			return 2
		}
		fmt.Fprintf(stderr, "marlin-run %s: %v\n", cmd.Name, err)
		return 1
	}
	return 0
}

// flagSet builds cmd's flag set: the common flags (--log-format,
// --log-level; --set and --workdir for job commands) and cmd's own.
func (a *app) flagSet(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet("marlin-run "+cmd.Name, flag.ContinueOnError)
	a.commonFlags(fs)
	if cmd.Job {
		a.jobFlags(fs)
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	return fs
}

// commonFlags registers the flags every command takes.
func (a *app) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.logFmt, "log-format", "text", "log and event `format`: text or json")
	fs.StringVar(&a.logLevel, "log-level", "", "log `level`: debug, info, warn or error (default: warn on a terminal with progress bars, info otherwise)")
}

func printHelp(w io.Writer, cmds []*command) {
	fmt.Fprintln(w, "marlin-run: run marlin quantization pipelines (YAML job files)")
	fmt.Fprintln(w, "\nusage: marlin-run <command> [flags] [args]\n\ncommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nrun 'marlin-run <command> -h' for a command's flags; 'marlin-run --version' for the version")
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
