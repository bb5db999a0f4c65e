package agent

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
)

// CodedError is an error that carries the exit code the command ends
// with, as pgBackRest's errors do (for example 45 for a WAL segment already
// archived with other content). cmd maps every other error by kind.
type CodedError interface {
	error
	Code() int
}

// codedError attaches a pgBackRest error code to an error.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) Code() int     { return e.code }

// withCode returns err carrying the exit code code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// Run runs the command that cfg names, writing its output to out.
func Run(ctx context.Context, cfg *config.Config, d Deps, out io.Writer) error {
	switch cfg.Command {
	case "version":
		_, err := fmt.Fprintf(out, "pgsidecar %s (pgBackRest 2.45 repository format, %s)\n", d.Version, runtime.Version())
		return err
	case "help", "":
		return help(out, cfg.Parameters)
	case "config":
		return cfg.Describe(out, false)
	}
	// archive_command and restore_command ask the daemon first: it answers
	// over warm repository connections, often with a push already done.
	var viaDaemon func(context.Context, *config.Config, *zap.Logger) (bool, error)
	switch cfg.Command {
	case "archive-push":
		viaDaemon = pushViaDaemon
	case "archive-get":
		viaDaemon = getViaDaemon
	case "backup":
		viaDaemon = backupViaDaemon
	}
	if viaDaemon != nil {
		log := d.Log
		if log == nil {
			log = zap.NewNop()
		}
		if handled, err := viaDaemon(ctx, cfg, log); handled {
			return err
		}
	}
	run, ok := repoCommands()[cfg.Command]
	if !ok {
		return withCode(48, fmt.Errorf("command %q is not implemented by pgsidecar yet", cfg.Command))
	}
	repos, err := OpenRepos(ctx, cfg, d)
	if err != nil {
		return err
	}
	defer func() { _ = CloseRepos(repos) }()
	return run(ctx, cfg, repos, d, out)
}

// repoCommand runs a command over the opened repositories.
type repoCommand func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, out io.Writer) error

// repoCommands lists the commands that work on the repositories.
func repoCommands() map[string]repoCommand {
	return map[string]repoCommand{
		"stanza-create": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return StanzaCreate(ctx, cfg, repos, d.Log)
		},
		"stanza-upgrade": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return StanzaUpgrade(ctx, cfg, repos, d.Log)
		},
		"archive-push": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return ArchivePush(ctx, cfg, repos, d.Log)
		},
		"archive-get": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return ArchiveGet(ctx, cfg, repos, d.Log)
		},
		"run": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return RunDaemon(ctx, cfg, repos, d)
		},
		"info": func(ctx context.Context, cfg *config.Config, repos []Repo, _ Deps, out io.Writer) error {
			return Info(ctx, cfg, repos, out)
		},
		"backup": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return Backup(ctx, cfg, repos, d.Log)
		},
		"restore": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return Restore(ctx, cfg, repos, d.Log)
		},
		"expire": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, _ io.Writer) error {
			return Expire(ctx, cfg, repos, d.Log)
		},
		"verify": func(ctx context.Context, cfg *config.Config, repos []Repo, d Deps, out io.Writer) error {
			return Verify(ctx, cfg, repos, d.Log, out)
		},
	}
}
