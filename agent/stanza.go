package agent

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/pg"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// pgBackRest error codes used by the stanza commands.
const (
	codeFileMissing  = 55
	codePathNotEmpty = 40
	codeDBMismatch   = 58
	codeCrypto       = 95
)

// cluster is what the stanza commands need to know of the database.
type cluster struct {
	version string
	control pg.Control
}

// readCluster reads PG_VERSION and pg_control from pg1-path.
func readCluster(cfg *config.Config) (cluster, error) {
	if len(cfg.Pgs) == 0 || cfg.Pgs[0].Path == "" {
		return cluster{}, withCode(37, fmt.Errorf("pg1-path is required to read the cluster's version and system id"))
	}
	dir := cfg.Pgs[0].Path
	v, err := pg.ReadVersion(dir)
	if err != nil {
		return cluster{}, fmt.Errorf("pg1-path=%s: %w", dir, err)
	}
	c, err := pg.ReadControl(dir)
	if err != nil {
		return cluster{}, fmt.Errorf("pg1-path=%s: %w", dir, err)
	}
	return cluster{version: v, control: c}, nil
}

// openStanza returns the stanza's view of an opened repository.
func openStanza(cfg *config.Config, r Repo) *repo.Repository {
	pass := ""
	if r.Config.Cipher.Type == "aes-256-cbc" {
		pass = r.Config.Cipher.Pass.Value()
	}
	return repo.Open(r.Store, r.Name(), cfg.Stanza, pass)
}

// cryptoCode gives cipher problems pgBackRest's crypto error code.
func cryptoCode(err error) error {
	if errors.Is(err, repo.ErrWrongPassphrase) || errors.Is(err, repo.ErrEncrypted) || errors.Is(err, repo.ErrNotEncrypted) {
		return withCode(codeCrypto, err)
	}
	return err
}

// infoState says which of a stanza's four info files exist.
type infoState struct {
	archive, archiveCopy, backup, backupCopy bool
}

func (s infoState) none() bool { return !s.archive && !s.archiveCopy && !s.backup && !s.backupCopy }

func stanzaInfoState(ctx context.Context, rs *repo.Repository) (infoState, error) {
	var s infoState
	var err error
	for _, f := range []struct {
		key string
		dst *bool
	}{
		{rs.ArchiveKey(repo.ArchiveInfoFile), &s.archive},
		{rs.ArchiveKey(repo.ArchiveInfoFile + repo.CopyExt), &s.archiveCopy},
		{rs.BackupKey(repo.BackupInfoFile), &s.backup},
		{rs.BackupKey(repo.BackupInfoFile + repo.CopyExt), &s.backupCopy},
	} {
		if *f.dst, err = rs.Exists(ctx, f.key); err != nil {
			return s, err
		}
	}
	return s, nil
}

// notEmpty reports whether any object exists under prefix.
func notEmpty(ctx context.Context, s storage.Store, prefix string) (bool, error) {
	errFound := errors.New("found")
	err := s.List(ctx, prefix, func(storage.ObjectInfo) error { return errFound })
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// StanzaCreate creates the stanza in every repository, as pgBackRest's
// stanza-create does: new archive.info and backup.info (with fresh
// sub-passphrases when encrypted) where none exist and the stanza's
// directories are empty; where they exist, it checks that they describe this
// cluster and that the repository's encryption matches the configuration,
// and restores a missing copy.
func StanzaCreate(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	cl, err := readCluster(cfg)
	if err != nil {
		return err
	}
	for _, r := range repos {
		log.Info("stanza-create", zap.String("stanza", cfg.Stanza), zap.String("repo", r.Name()))
		if err := stanzaCreateRepo(ctx, cfg, r, cl, log); err != nil {
			return fmt.Errorf("stanza-create on %s: %w", r.Name(), err)
		}
	}
	return nil
}

func stanzaCreateRepo(ctx context.Context, cfg *config.Config, r Repo, cl cluster, log *zap.Logger) error {
	rs := openStanza(cfg, r)
	st, err := stanzaInfoState(ctx, rs)
	if err != nil {
		return err
	}
	switch {
	case st.none():
		archiveUsed, err := notEmpty(ctx, r.Store, rs.ArchiveKey(""))
		if err != nil {
			return err
		}
		backupUsed, err := notEmpty(ctx, r.Store, rs.BackupKey(""))
		if err != nil {
			return err
		}
		if archiveUsed || backupUsed {
			return withCode(codePathNotEmpty, fmt.Errorf("%s: the stanza's archive or backup directory is not empty but has no info files", r.Name()))
		}
		return createInfo(ctx, rs, cl)
	case (st.archive || st.archiveCopy) && (st.backup || st.backupCopy):
		if err := checkStanzaInfo(ctx, rs, cl); err != nil {
			return err
		}
		repaired := false
		for _, pair := range []struct {
			main, copy bool
			key        string
		}{
			{st.archive, st.archiveCopy, rs.ArchiveKey(repo.ArchiveInfoFile)},
			{st.backup, st.backupCopy, rs.BackupKey(repo.BackupInfoFile)},
		} {
			if pair.main && pair.copy {
				continue
			}
			src, dst := pair.key, pair.key+repo.CopyExt
			if !pair.main {
				src, dst = dst, src
			}
			if err := copyObject(ctx, r.Store, src, dst); err != nil {
				return err
			}
			repaired = true
		}
		if !repaired {
			log.Info("stanza already exists and is valid", zap.String("stanza", cfg.Stanza), zap.String("repo", r.Name()))
		}
		return nil
	case st.archive || st.archiveCopy:
		return withCode(codeFileMissing, fmt.Errorf("archive.info exists but backup.info is missing on %s (this may be a symptom of repository corruption)", r.Name()))
	default:
		return withCode(codeFileMissing, fmt.Errorf("backup.info exists but archive.info is missing on %s (this may be a symptom of repository corruption)", r.Name()))
	}
}

// newSubPass returns a fresh sub-passphrase for an encrypted repository, or
// "" for a plain one.
func newSubPass(rs *repo.Repository) (string, error) {
	if !rs.Encrypted() {
		return "", nil
	}
	return cipher.NewPassphrase()
}

func createInfo(ctx context.Context, rs *repo.Repository, cl cluster) error {
	pass, err := newSubPass(rs)
	if err != nil {
		return err
	}
	ai, err := repo.NewArchiveInfo(cl.version, cl.control.SystemID, pass)
	if err != nil {
		return err
	}
	if err := rs.SaveArchiveInfo(ctx, ai); err != nil {
		return err
	}
	if pass, err = newSubPass(rs); err != nil {
		return err
	}
	bi, err := repo.NewBackupInfo(cl.version, cl.control.SystemID, cl.control.CatalogVersion, pass)
	if err != nil {
		return err
	}
	return rs.SaveBackupInfo(ctx, bi)
}

// loadStanzaInfo loads both info files, mapping cipher problems to their code.
func loadStanzaInfo(ctx context.Context, rs *repo.Repository) (*repo.ArchiveInfo, *repo.BackupInfo, error) {
	ai, err := rs.LoadArchiveInfo(ctx)
	if err != nil {
		return nil, nil, cryptoCode(err)
	}
	bi, err := rs.LoadBackupInfo(ctx)
	if err != nil {
		return nil, nil, cryptoCode(err)
	}
	return ai, bi, nil
}

// checkStanzaInfo checks that both info files describe the same current
// cluster and that it is this one, as pgBackRest's checkStanzaInfoPg does.
func checkStanzaInfo(ctx context.Context, rs *repo.Repository, cl cluster) error {
	ai, bi, err := loadStanzaInfo(ctx, rs)
	if err != nil {
		return err
	}
	ah, aok := ai.Current()
	bh, bok := bi.Current()
	if !aok || !bok || ah.ID != bh.ID || ah.Version != bh.Version || ah.SystemID != bh.SystemID {
		return withCode(codeFileMissing, fmt.Errorf("%s: backup info file and archive info file do not match (archive: id %d, version %s, system-id %d; backup: id %d, version %s, system-id %d); this is a symptom of repository corruption", rs.Name(), ah.ID, ah.Version, ah.SystemID, bh.ID, bh.Version, bh.SystemID))
	}
	if ah.Version != cl.version || ah.SystemID != cl.control.SystemID {
		return withCode(codeDBMismatch, fmt.Errorf("%s: backup and archive info files exist but do not match the database (stanza version %s, system-id %d; database version %s, system-id %d); is this the correct stanza? did an upgrade occur? (then run stanza-upgrade)", rs.Name(), ah.Version, ah.SystemID, cl.version, cl.control.SystemID))
	}
	return nil
}

// copyObject copies src to dst byte for byte.
func copyObject(ctx context.Context, s storage.Store, src, dst string) error {
	rc, err := s.Get(ctx, src, storage.Range{})
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.Put(ctx, dst, rc)
}

// StanzaUpgrade records the cluster as the stanza's new current database in
// every repository after a PostgreSQL major upgrade (or a new system id), as
// pgBackRest's stanza-upgrade does; a stanza already current is left alone.
func StanzaUpgrade(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	cl, err := readCluster(cfg)
	if err != nil {
		return err
	}
	for _, r := range repos {
		rs := openStanza(cfg, r)
		ai, bi, err := loadStanzaInfo(ctx, rs)
		if err != nil {
			return fmt.Errorf("stanza-upgrade on %s: %w", r.Name(), err)
		}
		changed := false
		if h, ok := ai.Current(); !ok || h.Version != cl.version || h.SystemID != cl.control.SystemID {
			if err := ai.AddHistory(cl.version, cl.control.SystemID); err != nil {
				return err
			}
			changed = true
		}
		if h, ok := bi.Current(); !ok || h.Version != cl.version || h.SystemID != cl.control.SystemID {
			if err := bi.AddHistory(cl.version, cl.control.SystemID, cl.control.CatalogVersion); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			log.Info("stanza is already up to date", zap.String("stanza", cfg.Stanza), zap.String("repo", r.Name()))
			continue
		}
		if err := rs.SaveArchiveInfo(ctx, ai); err != nil {
			return fmt.Errorf("stanza-upgrade on %s: %w", r.Name(), err)
		}
		if err := rs.SaveBackupInfo(ctx, bi); err != nil {
			return fmt.Errorf("stanza-upgrade on %s: %w", r.Name(), err)
		}
		log.Info("stanza upgraded", zap.String("stanza", cfg.Stanza), zap.String("repo", r.Name()), zap.String("version", cl.version))
	}
	return nil
}
