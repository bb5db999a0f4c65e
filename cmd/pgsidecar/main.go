// Command pgsidecar is the backup agent's one binary: the sidecar daemon
// (run), PostgreSQL's archive_command and restore_command (archive-push,
// archive-get), and the pgBackRest-named commands. It only wires: arguments
// and environment go to config.Load, a zap logger and a Prometheus registry
// are built, agent runs the command, and errors become exit codes here.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgsidecar/pgsidecar/agent"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// Exit codes follow pgBackRest's error codes, so that scripts written for
// pgbackrest read ours the same way. All are between 1 and 125: PostgreSQL
// treats an archive_command or restore_command exit above 125 as fatal.
const (
	exitOK          = 0
	exitConfig      = 31  // option-invalid: bad configuration or arguments
	exitFileMissing = 55  // an object the command needs is missing
	exitInterrupted = 63  // term: stopped by a signal
	exitRepoInvalid = 103 // repo-invalid
	exitAccess      = 105 // permission denied by storage or file system
	exitRuntime     = 122 // any other failure
	exitMax         = 125 // PostgreSQL aborts recovery/archiving above this
)

// exitCode maps an error to the exit code; the one table of the program.
func exitCode(err error) int {
	var ce agent.CodedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return min(max(ce.Code(), 1), exitMax)
	case errors.Is(err, config.ErrInvalid):
		return exitConfig
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, storage.ErrNotExist):
		return exitFileMissing
	case errors.Is(err, storage.ErrPermission):
		return exitAccess
	case errors.Is(err, storage.ErrInvalid):
		return exitRepoInvalid
	}
	return exitRuntime
}

func run(args, env []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(config.Input{Args: args, Env: env})
	if err != nil {
		fmt.Fprintf(stderr, "ERROR: %v\n", err)
		return exitCode(err)
	}
	log := newLogger(cfg.LogLevelConsole, stderr)
	defer func() { _ = log.Sync() }()
	if cfg.Command != "config" { // config prints the warnings itself
		for _, w := range cfg.Warnings() {
			log.Warn(w)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if stopProfile := startCPUProfile(env, log); stopProfile != nil {
		defer stopProfile()
	}

	reg := prometheus.NewRegistry()
	deps := agent.Deps{Log: log, Registry: reg, Gatherer: reg, Env: env, Version: version}
	if cfg.Command == "run" {
		// The daemon serves them on metrics-address, beside its own.
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Command == "run" {
		// SIGHUP reloads the daemon's configuration from the same input.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		deps.Reload = &agent.Reloader{Requests: hup, Load: func() (*config.Config, error) {
			return config.Load(config.Input{Args: args, Env: env})
		}}
	}
	if err := agent.Run(ctx, cfg, deps, stdout); err != nil {
		code := exitCode(err)
		if cfg.Command == "archive-get" && code == 1 {
			// Not in the archive: the normal end of recovery, not a failure.
			log.Info("WAL file not found in the archive", zap.Error(err))
			return code
		}
		log.Error("command failed", zap.String("command", cfg.Command), zap.Error(err))
		return code
	}
	return exitOK
}

// newLogger logs to stderr at pgBackRest's log-level-console.
func newLogger(level string, w io.Writer) *zap.Logger {
	var lvl zapcore.Level
	switch level {
	case "off":
		return zap.NewNop()
	case "error":
		lvl = zapcore.ErrorLevel
	case "warn", "":
		lvl = zapcore.WarnLevel
	case "info", "detail":
		lvl = zapcore.InfoLevel
	default: // debug, trace
		lvl = zapcore.DebugLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core)
}

// startCPUProfile writes a CPU profile of the whole command to the file named
// by PGSIDECAR_CPUPROFILE, and the allocation profile beside it (.heap), for
// the benchmarks in bench/; nil when unset.
func startCPUProfile(env []string, log *zap.Logger) func() {
	var path string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PGSIDECAR_CPUPROFILE="); ok {
			path = v
		}
	}
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("cpu profile not written", zap.String("file", path), zap.Error(err))
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("cpu profile not written", zap.String("file", path), zap.Error(err))
		_ = f.Close()
		return nil
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		if h, err := os.Create(path + ".heap"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(h, 0)
			_ = h.Close()
		}
	}
}
