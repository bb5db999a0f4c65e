package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/restore"
)

// codeBackupSetInvalid is pgBackRest's error for a --set that no repository holds.
const codeBackupSetInvalid = 99

// Restore is the restore command: the latest backup (or --set) of the first
// repository that has it (or --repo) is written into pg1-path, followed by
// the recovery settings of --type.
func Restore(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	_, err := RestoreStats(ctx, cfg, repos, log)
	return err
}

// smallFileWorkersPerProcess is how many small-file downloads a restore from
// an object store keeps in flight per process-max, beside the large files.
const smallFileWorkersPerProcess = 4

// RestoreStats is Restore returning what the restore did.
func RestoreStats(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) (restore.Stats, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if len(cfg.Pgs) == 0 || cfg.Pgs[0].Path == "" {
		return restore.Stats{}, withCode(codeOptionMissing, errors.New("restore command requires option: pg1-path"))
	}
	dataDir, err := filepath.Abs(cfg.Pgs[0].Path)
	if err != nil {
		return restore.Stats{}, fmt.Errorf("pg1-path: %w", err)
	}
	rs, m, err := restoreSource(ctx, cfg, repos, log)
	if err != nil {
		return restore.Stats{}, err
	}
	typ := cfg.Type
	if typ == "" {
		typ = restore.TypeDefault
	}
	// An offline backup restores without recovery unless --type is given,
	// as pgBackRest does (recovery.signal would fail with wal_level=minimal).
	if !m.Options.Online && !explicit(cfg, "type") {
		typ = restore.TypeNone
	}
	rec := restore.Recovery{
		Type: typ, Target: cfg.Target, TargetAction: cfg.TargetAction, TargetExclusive: cfg.TargetExclusive,
		TargetTimeline: cfg.TargetTimeline, Options: cfg.RecoveryOption, ArchiveModeOff: cfg.ArchiveMode == "off",
	}
	if typ != restore.TypeNone && typ != restore.TypePreserve {
		if rec.RestoreCommand, err = restoreCommand(cfg); err != nil {
			return restore.Stats{}, err
		}
		// Render once before writing anything, so bad options fail early.
		if _, err := rec.Settings(); err != nil {
			return restore.Stats{}, withCode(codeOptionInvalid, err)
		}
	}
	opts := restore.Options{
		Mapping: restore.Mapping{
			DataDir: dataDir, TablespaceMap: cfg.TablespaceMap, TablespaceMapAll: cfg.TablespaceMapAll,
			LinkAll: cfg.LinkAll, LinkMap: cfg.LinkMap,
		},
		Delta: cfg.Delta, Force: cfg.Force, ProcessMax: cfg.ProcessMax, Log: log,
		DBInclude: cfg.DBInclude, DBExclude: cfg.DBExclude,
	}
	for _, r := range repos {
		if r.Name() == rs.Name() && r.Config.Type != "posix" && r.Config.Type != "cifs" && r.Config.Type != "" {
			// Object stores: small files are a round trip each.
			opts.SmallFileWorkers = smallFileWorkersPerProcess * max(cfg.ProcessMax, 1)
		}
	}
	if typ == restore.TypePreserve {
		opts.Preserve = restore.PreserveFiles()
	}
	log.Info("restore backup set", zap.String("repo", rs.Name()), zap.String("label", m.Label), zap.String("pg1-path", dataDir))
	st, err := restore.Run(ctx, rs, m, opts)
	if err != nil {
		switch {
		case errors.Is(err, restore.ErrRunning):
			err = withCode(38, err) // pgBackRest's PgRunningError
		case errors.Is(err, restore.ErrNotEmpty):
			err = withCode(codePathNotEmpty, err)
		case errors.Is(err, restore.ErrDatabase):
			err = withCode(codeOptionInvalid, err)
		}
		return st, fmt.Errorf("restore %s from %s: %w", m.Label, rs.Name(), err)
	}
	label := time.Now().Format("2006-01-02 15:04:05")
	if err := restore.WriteRecovery(dataDir, label, rec, m.Options.Online); err != nil {
		return st, err
	}
	log.Info("restore command end: completed successfully", zap.Int("downloaded", st.Downloaded), zap.Int("kept", st.Kept))
	return st, nil
}

// restoreSource finds the backup to restore: --set (default the latest) in
// --repo, or in the first repository that has it, falling through repositories
// that cannot be read.
func restoreSource(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) (*repo.Repository, *repo.Manifest, error) {
	set := cfg.Set
	if set == "latest" {
		set = ""
	}
	var errs []error
	for _, r := range repos {
		if cfg.RepoSelected != 0 && r.Config.Index != cfg.RepoSelected {
			continue
		}
		rs := openStanza(cfg, r)
		bi, err := rs.LoadBackupInfo(ctx)
		if err != nil {
			log.Warn("repository skipped", zap.String("repo", r.Name()), zap.Error(err))
			errs = append(errs, cryptoCode(err))
			continue
		}
		label := ""
		for _, b := range bi.Backups {
			if set == "" || b.Label == set {
				label = b.Label
			}
		}
		if label == "" {
			continue
		}
		m, err := rs.LoadManifest(ctx, label, bi.CipherPass)
		if err != nil {
			log.Warn("repository skipped", zap.String("repo", r.Name()), zap.Error(err))
			errs = append(errs, cryptoCode(err))
			continue
		}
		return rs, m, nil
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if set == "" {
		return nil, nil, withCode(codeBackupSetInvalid, errors.New("no backup set found to restore"))
	}
	return nil, nil, withCode(codeBackupSetInvalid, fmt.Errorf("backup set %s is not valid", set))
}

// restoreOnlyOptions returns the options restore_command does not pass on to
// archive-get: pgBackRest's replacements plus the options archive-get does not take.
func restoreOnlyOptions() []string {
	return []string{
		"exec-id", "job-retry", "job-retry-interval", "log-level-console", "log-level-file", "log-level-stderr",
		"log-subprocess", "log-timestamp", "process-max", "cmd",
		"archive-mode", "db-exclude", "db-include", "delta", "force", "link-all", "link-map", "recovery-option",
		"set", "tablespace-map", "tablespace-map-all", "target", "target-action", "target-exclusive",
		"target-timeline", "type", "buffer-size", "compress-level-network",
	}
}

// restoreCommand renders restore_command as pgBackRest does: this binary, the
// options given on the command line that archive-get takes, then archive-get.
func restoreCommand(cfg *config.Config) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the pgsidecar binary for restore_command: %w", err)
	}
	var params []string
	opts := cfg.Options()
	slices.SortFunc(opts, func(a, b config.Option) int { return strings.Compare(a.Name, b.Name) })
	quote := func(v string) string {
		if strings.Contains(v, " ") {
			return `"` + v + `"`
		}
		return v
	}
	for _, o := range opts {
		// pgBackRest passes on only command-line options, never secure ones nor
		// the cipher type (useless without the passphrase).
		if o.Source.Kind != config.SourceFlag || o.Secure || strings.HasSuffix(o.Name, "-cipher-type") ||
			slices.Contains(restoreOnlyOptions(), o.Name) {
			continue
		}
		switch {
		case o.Negated || o.Value == "n":
			params = append(params, "--no-"+o.Name)
		case o.Value == "y":
			params = append(params, "--"+o.Name)
		case len(o.Values) > 0:
			for _, v := range o.Values {
				params = append(params, "--"+o.Name+"="+quote(v))
			}
		default:
			params = append(params, "--"+o.Name+"="+quote(o.Value))
		}
	}
	return fmt.Sprintf("%s %s archive-get %%f \"%%p\"", exe, strings.Join(params, " ")), nil
}
