package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
)

// pgBackRest error codes used by the archive commands.
const (
	codeNotFound      = 1 // archive-get: the file is not in the archive
	codeOptionInvalid = 32
	codeOptionMissing = 37
	codeParamRequired = 43
	codeParamInvalid  = 96
)

// pgPath returns pg1-path, "" when it is not set.
func pgPath(cfg *config.Config) string {
	if len(cfg.Pgs) == 0 {
		return ""
	}
	return cfg.Pgs[0].Path
}

// stanzas returns the stanza's view of every repository, in order.
func stanzas(cfg *config.Config, repos []Repo) []*repo.Repository {
	out := make([]*repo.Repository, len(repos))
	for i, r := range repos {
		out[i] = openStanza(cfg, r)
	}
	return out
}

// walPath resolves the path PostgreSQL passes (%p) the way pgBackRest's
// walPath does. An absolute path is used as it is. A relative one is
// relative to pg1-path, because PostgreSQL runs archive_command and
// restore_command in its data directory. That requires pg1-path, and the
// working directory cwd must be pg1-path. Otherwise PostgreSQL and the
// configuration disagree about where the data directory is.
func walPath(file, pgPath, command, cwd string) (string, error) {
	if filepath.IsAbs(file) {
		return file, nil
	}
	if pgPath == "" {
		return "", withCode(codeOptionMissing, fmt.Errorf("option 'pg1-path' must be specified when relative wal paths are used\n"+
			"HINT: is %%f passed to %s instead of %%p?\n"+
			"HINT: PostgreSQL may pass relative paths even with %%p depending on the environment.", command))
	}
	if cwd != pgPath {
		a, errA := os.Stat(cwd)
		b, errB := os.Stat(pgPath)
		if errA != nil || errB != nil || !os.SameFile(a, b) {
			return "", withCode(codeOptionInvalid, fmt.Errorf("PostgreSQL working directory '%s' is not the same as option pg1-path '%s'\n"+
				"HINT: is the PostgreSQL data_directory configured the same as the pg1-path option?", cwd, pgPath))
		}
	}
	return filepath.Join(pgPath, file), nil
}

// resolveWALPath is walPath with the process's working directory.
func resolveWALPath(file, pgPath, command string) (string, error) {
	if filepath.IsAbs(file) {
		return file, nil
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get the working directory: %w", err)
	}
	return walPath(file, pgPath, command, cwd)
}

// ArchivePush is the archive-push command (archive_command =
// 'pgsidecar --stanza=<s> archive-push %p'). It pushes the one WAL file named
// by the parameter to every repository, as pgBackRest's synchronous
// archive-push does. It returns nil only when every repository holds the
// file. With archive-push-queue-max set and exceeded, it drops the file
// instead: it warns and reports success without archiving.
//
// The cluster's version and system id come from pg1-path when it is set.
// Otherwise the first repository's archive.info is taken as the truth.
func ArchivePush(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	if len(cfg.Parameters) != 1 {
		return withCode(codeParamRequired, errors.New("WAL segment to push required"))
	}
	pg := pgPath(cfg)
	file, err := resolveWALPath(cfg.Parameters[0], pg, "archive-push")
	if err != nil {
		return err
	}
	name := filepath.Base(file)
	if _, err := archive.ParseName(name); err != nil {
		return err
	}
	if limit := cfg.ArchivePushQueueMax; limit != nil {
		drop, err := archive.QueueExceeded(filepath.Dir(file), *limit)
		if err != nil {
			return err
		}
		if drop {
			log.Warn(archive.DropWarning(name, *limit))
			return nil
		}
	}

	p, err := newPusher(ctx, cfg, repos, log, 0)
	if err != nil {
		return err
	}
	res, err := p.Push(ctx, file)
	if err != nil {
		return err
	}
	log.Info("pushed WAL file to the archive", zap.String("wal", name), zap.Strings("written", res.Written),
		zap.Strings("already-archived", res.Existing), zap.Int64("size", res.Size), zap.Int64("stored", res.Stored))
	return nil
}

// newPusher prepares every repository for archive-push (archive.OpenPush)
// and returns a Pusher over them, with the compression and check options of
// cfg. The cluster's version and system id come from pg1-path when it is
// set; otherwise the first repository's archive.info is taken as the truth.
// listWait is archive.PushOptions.ListWait: 0 for archive-push, which
// waits for every repository as pgBackRest does.
func newPusher(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger, listWait time.Duration) (*archive.Pusher, error) {
	var cl *archive.Cluster
	if pgPath(cfg) != "" {
		c, err := readCluster(cfg)
		if err != nil {
			return nil, err
		}
		cl = &archive.Cluster{Version: c.version, SystemID: c.control.SystemID}
	}
	ct, err := compress.ParseType(cfg.CompressType)
	if err != nil {
		return nil, withCode(codeOptionInvalid, err)
	}
	targets, id, err := archive.OpenPush(ctx, stanzas(cfg, repos), cl)
	if err != nil {
		return nil, err
	}
	p, err := archive.NewPusher(targets, archive.PushOptions{
		CompressType:  ct,
		CompressLevel: cfg.CompressLevel,
		HeaderCheck:   cfg.ArchiveHeaderCheck,
		ModeCheck:     cfg.ArchiveModeCheck,
		Cluster:       id,
		Log:           log,
		ListWait:      listWait,
	})
	if err != nil {
		if errors.Is(err, compress.ErrReadOnly) {
			return nil, withCode(codeOptionInvalid, err)
		}
		return nil, err
	}
	return p, nil
}

// ArchiveGet is the archive-get command (restore_command =
// 'pgsidecar --stanza=<s> archive-get %f "%p"'). It restores the WAL file
// named by the first parameter to the path given by the second, as
// pgBackRest's synchronous archive-get does. A file that is in no
// repository gives an error with exit code 1. PostgreSQL takes that as the
// end of the archive.
func ArchiveGet(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	switch n := len(cfg.Parameters); {
	case n == 0:
		return withCode(codeParamRequired, errors.New("WAL segment to get required"))
	case n == 1:
		return withCode(codeParamRequired, errors.New("path to copy WAL segment required"))
	case n > 2:
		return withCode(codeParamInvalid, errors.New("extra parameters found"))
	}
	name := filepath.Base(cfg.Parameters[0])
	if _, err := archive.ParseName(name); err != nil {
		return err
	}
	pg := pgPath(cfg)
	if pg == "" {
		return withCode(codeOptionMissing, errors.New("archive-get requires option pg1-path: pg_control gives the cluster's version and system id"))
	}
	dest, err := resolveWALPath(cfg.Parameters[1], pg, "archive-get")
	if err != nil {
		return err
	}
	c, err := readCluster(cfg)
	if err != nil {
		return err
	}
	sources := archive.OpenGet(ctx, stanzas(cfg, repos), archive.Cluster{Version: c.version, SystemID: c.control.SystemID})
	res, err := archive.Get(ctx, sources, name, dest, log)
	if errors.Is(err, archive.ErrNotFound) {
		log.Info("unable to find " + name + " in the archive")
		return withCode(codeNotFound, err)
	}
	if err != nil {
		return err
	}
	log.Info(fmt.Sprintf("found %s in the %s: %s archive", name, res.Repo, res.ArchiveID))
	return nil
}

// daemonTimeout is how long a client waits for the daemon's answer:
// archive-timeout, as pgBackRest's asynchronous archiving waits for its
// background process.
func daemonTimeout(cfg *config.Config) time.Duration {
	if cfg.ArchiveTimeout > 0 {
		return cfg.ArchiveTimeout
	}
	return 60 * time.Second
}

// pushViaDaemon asks the daemon (pgsidecar run) to push the file of an
// archive-push command. It reports handled=false, and the caller pushes the
// file itself, whenever the daemon cannot answer: no daemon, a daemon
// shutting down, a broken connection, or no answer within archive-timeout.
// Archiving never depends on the daemon. The parameters are checked as
// ArchivePush checks them, and left to it when they are wrong; a file
// outside pg1-path/pg_wal is pushed by the caller too. With
// archive-push-queue-max exceeded the file is dropped here, as ArchivePush
// would.
func pushViaDaemon(ctx context.Context, cfg *config.Config, log *zap.Logger) (bool, error) {
	pg := pgPath(cfg)
	if len(cfg.Parameters) != 1 || pg == "" {
		return false, nil
	}
	file, err := resolveWALPath(cfg.Parameters[0], pg, "archive-push")
	if err != nil {
		return false, nil
	}
	name := filepath.Base(file)
	if _, err := archive.ParseName(name); err != nil || filepath.Clean(file) != filepath.Join(pg, "pg_wal", name) {
		return false, nil
	}
	if limit := cfg.ArchivePushQueueMax; limit != nil {
		drop, err := archive.QueueExceeded(filepath.Dir(file), *limit)
		if err != nil {
			return false, nil
		}
		if drop {
			log.Warn(archive.DropWarning(name, *limit))
			return true, nil
		}
	}
	return askDaemon(ctx, cfg, request{Op: "push", Name: name, Path: filepath.Clean(file), PgPath: pgPath(cfg)}, log)
}

// getViaDaemon asks the daemon to restore the file of an archive-get
// command into pg_wal, on the same terms as pushViaDaemon.
func getViaDaemon(ctx context.Context, cfg *config.Config, log *zap.Logger) (bool, error) {
	pg := pgPath(cfg)
	if len(cfg.Parameters) != 2 || pg == "" {
		return false, nil
	}
	name := filepath.Base(cfg.Parameters[0])
	if _, err := archive.ParseName(name); err != nil {
		return false, nil
	}
	dest, err := resolveWALPath(cfg.Parameters[1], pg, "archive-get")
	if err != nil || filepath.Dir(filepath.Clean(dest)) != filepath.Join(pg, "pg_wal") || !restoreName(filepath.Base(dest)) {
		return false, nil
	}
	handled, err := askDaemon(ctx, cfg, request{Op: "get", Name: name, Path: filepath.Clean(dest), PgPath: pg}, log)
	if handled && errorCode(err) == codeNotFound {
		log.Info("unable to find " + name + " in the archive")
		return true, withCode(codeNotFound, fmt.Errorf("%w: %w", err, archive.ErrNotFound))
	}
	return handled, err
}

// askDaemon sends req to the stanza's daemon and returns its outcome, or
// handled=false when no daemon answered.
func askDaemon(ctx context.Context, cfg *config.Config, req request, log *zap.Logger) (bool, error) {
	socket, err := SocketPath(cfg)
	if err != nil {
		return false, nil
	}
	start := time.Now()
	resp, err := callDaemon(ctx, socket, req, daemonTimeout(cfg))
	switch {
	case errors.Is(err, errNoDaemon):
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			log.Warn("the daemon did not answer in time: working alone", zap.String("wal", req.Name), zap.Error(err))
		} else {
			log.Debug("no daemon answers: working alone", zap.String("socket", socket), zap.Error(err))
		}
		return false, nil
	case err != nil:
		return true, err
	}
	log.Info("daemon answered", zap.String("op", req.Op), zap.String("wal", req.Name), zap.Bool("ok", resp.OK),
		zap.String("message", resp.Message), zap.Duration("elapsed", time.Since(start)))
	return true, resp.err()
}
