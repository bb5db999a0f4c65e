package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/backup"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
)

// pgBackRest error codes used by the backup command.
const (
	codeArchiveTimeout = 82
	codeDBConnect      = 56
	codeLockAcquire    = 50
)

// defaultSocketPath is pgBackRest's compiled-in pg-socket-path default.
const defaultSocketPath = "/var/run/postgresql"

// connConfig returns the connection to pg1: the unix socket in pg1-socket-path, pg1-port,
// pg1-user (libpq's default, the OS user, when unset) and pg1-database.
func connConfig(cfg *config.Config) (*pgx.ConnConfig, error) {
	p := cfg.Pgs[0]
	quote := func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	socket := p.SocketPath
	if socket == "" {
		socket = defaultSocketPath
	}
	port := p.Port
	if port == 0 {
		port = 5432
	}
	db := p.Database
	if db == "" {
		db = "postgres"
	}
	parts := []string{
		"host=" + quote(socket), "port=" + strconv.Itoa(port), "dbname=" + quote(db),
		"application_name=" + quote("pgsidecar [backup]"), "sslmode=disable",
	}
	if p.User != "" {
		parts = append(parts, "user="+quote(p.User))
	}
	cc, err := pgx.ParseConfig(strings.Join(parts, " "))
	if err != nil {
		return nil, fmt.Errorf("pg1 connection options: %w", err)
	}
	return cc, nil
}

// backupRepo returns the repository a backup goes to: --repo, or repo1 (the first
// configured) as pgBackRest defaults to.
func backupRepo(cfg *config.Config, repos []Repo) (Repo, error) {
	if len(repos) == 0 {
		return Repo{}, withCode(codeOptionMissing, errors.New("no repository is configured"))
	}
	if cfg.RepoSelected != 0 {
		for _, r := range repos {
			if r.Config.Index == cfg.RepoSelected {
				return r, nil
			}
		}
		return Repo{}, withCode(codeOptionInvalid, fmt.Errorf("--repo=%d is not configured", cfg.RepoSelected))
	}
	return repos[0], nil
}

// Backup is the backup command: an online full, differential or incremental backup of
// pg1 into one repository (--repo, default the first), in pgBackRest 2.45's format.
func Backup(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	return backupWithProgress(ctx, cfg, repos, log, nil)
}

// backupWithProgress is Backup reporting the bytes copied so far of the
// total to progress (nil: none), as the daemon's queue shows them.
func backupWithProgress(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger, progress func(done, total uint64)) error {
	if len(cfg.Pgs) == 0 || cfg.Pgs[0].Path == "" {
		return withCode(codeOptionMissing, errors.New("backup requires option pg1-path"))
	}
	if cfg.Pgs[0].Host != "" {
		return withCode(codeOptionInvalid, errors.New("pg1-host: backup of a remote cluster is not supported by pgsidecar"))
	}
	typ := repo.BackupType(cfg.Type)
	if cfg.Type == "" {
		typ = repo.BackupIncr
	}
	if !typ.Valid() {
		return withCode(codeOptionInvalid, fmt.Errorf("invalid backup type '%s' (full, diff or incr)", cfg.Type))
	}
	r, err := backupRepo(cfg, repos)
	if err != nil {
		return err
	}
	cc, err := connConfig(cfg)
	if err != nil {
		return withCode(codeOptionInvalid, err)
	}
	ct, err := repo.ParseCompressType(cfg.CompressType)
	if err != nil {
		return withCode(codeOptionInvalid, err)
	}
	timeout := cfg.ArchiveTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	bufferSize := uint32(0)
	if cfg.BufferSize > 0 && cfg.BufferSize <= 1<<30 {
		bufferSize = uint32(cfg.BufferSize)
	}
	log.Info("backup start", zap.String("stanza", cfg.Stanza), zap.String("repo", r.Name()), zap.String("type", string(typ)))
	if err := removePartialBackup(ctx, cfg, r, cc, log); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Housekeeping only: the expire after the next backup removes it too.
		log.Warn("unfinished backup not removed", zap.String("repo", r.Name()), zap.Error(err))
	}
	began := time.Now()
	res, err := backup.Run(ctx, backup.Options{
		Repo: openStanza(cfg, r), PgPath: cfg.Pgs[0].Path, ConnConfig: cc, Type: typ,
		StartFast: cfg.StartFast, ProcessMax: cfg.ProcessMax, Progress: progress,
		CompressType: ct, CompressLevel: cfg.CompressLevel,
		ArchiveCheck: cfg.ArchiveCheck, ArchiveTimeout: timeout, ChecksumPage: cfg.ChecksumPage,
		Exclude: cfg.Exclude, Annotation: cfg.Annotation, BufferSize: bufferSize, Log: log,
		Bundle: r.Config.Bundle, BundleSize: uint64(max(r.Config.BundleSize, 0)), BundleLimit: uint64(max(r.Config.BundleLimit, 0)),
	})
	switch {
	case errors.Is(err, backup.ErrArchiveTimeout):
		return withCode(codeArchiveTimeout, err)
	case errors.Is(err, backup.ErrMismatch):
		return withCode(codeDBMismatch, err)
	case errors.Is(err, backup.ErrLocked):
		return withCode(codeLockAcquire, err)
	case errors.Is(err, backup.ErrConnect):
		return withCode(codeDBConnect, err)
	case err != nil:
		return cryptoCode(err)
	}
	elapsed := time.Since(began)
	log.Info("new backup label", zap.String("label", res.Label), zap.String("type", string(res.Type)),
		zap.Uint64("copied", res.Copied), zap.Uint64("repo-copied", res.RepoCopied), zap.Duration("elapsed", elapsed))
	// expire-auto: apply the repository's retention once the backup is complete.
	if cfg.ExpireAuto {
		return ExpireAfterBackup(ctx, cfg, repos, log)
	}
	return nil
}

// backupAdvisoryLockID is the advisory lock every backup of a cluster holds
// while it runs: pgBackRest's, which package backup takes as well.
const backupAdvisoryLockID = 12340078987004321

// removePartialBackup does what pgBackRest's backupResumeFind() does with a
// backup it does not resume (pgsidecar never resumes): when the newest
// backup directory of the stanza in r has no backup.manifest, a backup died
// there (a killed daemon, a lost pod, a failed copy), and the directory is
// removed before the new backup starts. Left in place, it would look like a
// backup in progress to verify until a newer backup exists, and then like a
// damaged one.
//
// A directory without manifest is also what a running backup looks like, so
// it is removed only under the cluster's backup advisory lock, which every
// running backup of the cluster (pgsidecar's or pgBackRest's) holds, and
// only after listing again under the lock. When the lock is held elsewhere,
// the cluster is a standby (the primary's backups hold the primary's lock)
// or the cluster cannot be reached, nothing is removed: the backup that
// follows fails for that reason anyway.
func removePartialBackup(ctx context.Context, cfg *config.Config, r Repo, cc *pgx.ConnConfig, log *zap.Logger) error {
	rs := openStanza(cfg, r)
	newestPartial := func() (string, error) {
		dirs, err := listBackupDirs(ctx, rs)
		if err != nil {
			return "", err
		}
		newest := ""
		for label := range dirs.manifest {
			newest = max(newest, label)
		}
		if newest == "" || dirs.manifest[newest] {
			return "", nil
		}
		return newest, nil
	}
	label, err := newestPartial()
	if err != nil || label == "" {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		log.Debug("unfinished backup left in place: no connection to the cluster", zap.String("label", label), zap.Error(err))
		return nil
	}
	// Closing the session releases the advisory lock.
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var recovery, locked bool
	if err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&recovery); err != nil {
		return fmt.Errorf("query pg_is_in_recovery(): %w", err)
	}
	if recovery {
		return nil
	}
	if err := conn.QueryRow(ctx, "select pg_try_advisory_lock("+strconv.FormatInt(backupAdvisoryLockID, 10)+"::bigint)").Scan(&locked); err != nil {
		return fmt.Errorf("take the backup advisory lock: %w", err)
	}
	if !locked {
		log.Info("backup without manifest left in place: a backup of the cluster is running", zap.String("repo", r.Name()), zap.String("label", label))
		return nil
	}
	if label, err = newestPartial(); err != nil || label == "" {
		return err
	}
	bi, err := rs.LoadBackupInfo(ctx)
	if err != nil {
		return err
	}
	if _, ok := bi.Find(label); ok {
		return nil // listed without manifest: expire's reconstruction deals with it
	}
	log.Warn(fmt.Sprintf("backup '%s' cannot be resumed: pgsidecar does not resume backups, removing it", label),
		zap.String("repo", r.Name()))
	return deleter{r: r, store: r.Store}.removeTree(ctx, rs.BackupKey(label))
}

// backupViaDaemon hands the backup to the daemon's queue when a daemon
// runs, so that it waits its turn behind scheduled and other one-off
// backups (one at a time across the repositories) instead of colliding with
// them. With no daemon, the backup runs here.
func backupViaDaemon(ctx context.Context, cfg *config.Config, log *zap.Logger) (bool, error) {
	repo := cfg.RepoSelected
	if repo == 0 && len(cfg.Repos) > 0 {
		repo = cfg.Repos[0].Index
	}
	typ := cfg.Type
	if typ == "" {
		typ = "incr"
	}
	socket, err := SocketPath(cfg)
	if err != nil || repo == 0 {
		return false, nil
	}
	resp, err := callDaemon(ctx, socket, request{Op: "backup", Repo: repo, Type: typ, StartFast: cfg.StartFast, PgPath: pgPath(cfg)}, 0)
	switch {
	case errors.Is(err, errNoDaemon):
		log.Debug("no daemon answers: backing up here", zap.String("socket", socket), zap.Error(err))
		return false, nil
	case err != nil:
		return true, err
	}
	log.Info("backup run by the daemon", zap.Int("repo", repo), zap.String("type", typ), zap.Bool("ok", resp.OK), zap.String("message", resp.Message))
	return true, resp.err()
}
