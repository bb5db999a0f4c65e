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
	"github.com/pgsidecar/pgsidecar/expire"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// Error codes of the expire command (pgBackRest's error.yaml).
const (
	codeExpireFormat     = 29
	codeExpireSetInvalid = 75
	codeExpireCommand    = 104
)

// Expire is the expire command: it applies each repository's retention (or, with
// --set, expires one backup and its dependents), then removes the backup
// directories no longer in backup.info, the WAL no remaining backup needs and the
// expired backup.history manifests, as pgBackRest 2.45 does. --repo limits it to
// one repository. A repository that fails is logged and the others are still
// processed; the command then fails with pgBackRest's CommandError.
func Expire(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	return expireRepos(ctx, cfg, repos, log, false)
}

// ExpireAfterBackup is the expiry the backup command runs when expire-auto is
// set: like pgBackRest it covers every repository unless --repo was given.
func ExpireAfterBackup(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger) error {
	return expireRepos(ctx, cfg, repos, log, true)
}

func expireRepos(ctx context.Context, cfg *config.Config, repos []Repo, zl *zap.Logger, afterBackup bool) error {
	log := expireLog{l: zl}
	if cfg.DryRun && !afterBackup {
		log.prefix = "[DRY-RUN] "
	}
	adhoc := ""
	if !afterBackup {
		adhoc = cfg.Set
	}
	if adhoc != "" && !repo.IsBackupLabel(adhoc) {
		return withCode(codeOptionInvalid, fmt.Errorf("'%s' is not a valid backup label format", adhoc))
	}
	selected := repos
	if cfg.RepoSelected != 0 {
		r, err := backupRepo(cfg, repos)
		if err != nil {
			return err
		}
		selected = []Repo{r}
	}
	found := false
	failed := 0
	for _, r := range selected {
		ok, err := expireRepo(ctx, cfg, r, log, adhoc, afterBackup)
		found = found || ok
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			log.error(r.Name() + ": " + err.Error())
			failed++
		}
	}
	if adhoc != "" && !found {
		log.warn(fmt.Sprintf("backup %s does not exist\nHINT: run the info command and confirm the backup is listed", adhoc))
	}
	if failed > 0 {
		return withCode(codeExpireCommand, fmt.Errorf("expire command encountered %d error(s), check the log file for details", failed))
	}
	return nil
}

// expireLog logs the expire command's messages, prefixed with "[DRY-RUN] " under
// --dry-run as pgBackRest does.
type expireLog struct {
	l      *zap.Logger
	prefix string
}

func (e expireLog) info(msg string)  { e.l.Info(e.prefix + msg) }
func (e expireLog) warn(msg string)  { e.l.Warn(e.prefix + msg) }
func (e expireLog) error(msg string) { e.l.Error(e.prefix + msg) }

// policy returns the retention of repository r.
func policy(r Repo) expire.Policy {
	ret := r.Config.Retention
	return expire.Policy{
		Full: ret.Full, FullTime: ret.FullType == "time", Diff: ret.Diff,
		Archive: ret.Archive, ArchiveType: repo.BackupType(ret.ArchiveType),
	}
}

// expireRepo expires one repository; found reports whether the adhoc label was in
// its backup.info. afterBackup is set when the backup command runs it, holding the
// cluster's backup lock, so no backup can be in progress.
func expireRepo(ctx context.Context, cfg *config.Config, r Repo, log expireLog, adhoc string, afterBackup bool) (found bool, err error) {
	rs := openStanza(cfg, r)
	name := r.Name()
	bi, err := rs.LoadBackupInfo(ctx)
	if err != nil {
		return false, cryptoCode(err)
	}
	disk, err := listBackupDirs(ctx, rs)
	if err != nil {
		return false, err
	}
	if err := reconstruct(ctx, rs, bi, disk, log); err != nil {
		return false, err
	}
	p := policy(r)
	res := expire.Result{ArchiveRetention: p.Archive}
	var expired []string
	if adhoc != "" {
		if _, ok := bi.Find(adhoc); ok {
			found = true
			set, latestRemoved, err := expire.Adhoc(bi, adhoc)
			if err != nil {
				if errors.Is(err, expire.ErrBackupSetInvalid) {
					return found, withCode(codeExpireSetInvalid, err)
				}
				return found, err
			}
			if latestRemoved != "" {
				log.warn(fmt.Sprintf("%s: expiring latest backup %s - the ability to perform point-in-time-recovery (PITR) may be affected\n"+
					"HINT: non-default settings for '%s-retention-archive'/'%s-retention-archive-type' (even in prior expires) can cause gaps in the WAL.",
					name, latestRemoved, name, name))
			}
			log.info(name + ": " + set.Message())
			expired = set.Labels
		}
	} else {
		res = expire.Backups(bi, p, time.Now())
		for _, s := range res.Sets {
			log.info(name + ": " + s.Message())
		}
		expired = res.Labels()
	}

	// backup.info (and its copy) first: a crash from here on leaves files that
	// the next expire removes, never backup.info naming removed data.
	dryRun := cfg.DryRun && !afterBackup
	if !dryRun {
		if err := rs.SaveBackupInfo(ctx, bi); err != nil {
			return found, err
		}
	}
	del := deleter{r: r, store: rs.Store(), dryRun: dryRun}
	// Then the manifests, newest first, so what a crash leaves is still consistent.
	slices.Sort(expired)
	slices.Reverse(expired)
	for _, l := range expired {
		key := rs.BackupKey(repo.BackupManifestPath(l))
		for _, k := range []string{key, key + repo.CopyExt} {
			if err := del.delete(ctx, k); err != nil {
				return found, err
			}
		}
	}

	if err := removeExpiredBackups(ctx, rs, bi, disk, del, adhoc, afterBackup, log); err != nil {
		return found, err
	}
	if err := removeExpiredArchive(ctx, rs, bi, del, res.ArchiveRetention, r, log); err != nil {
		return found, err
	}
	if h := r.Config.Retention.History; h != nil {
		if err := removeExpiredHistory(ctx, rs, bi, del, *h, log); err != nil {
			return found, err
		}
	}
	return found, nil
}

// deleter removes objects and, on posix repositories, the directories (and
// symlinks, which are not objects) they leave, as pgBackRest's recursive path
// remove does.
type deleter struct {
	r     Repo
	store storage.Store
	// dryRun (--dry-run) only logs: nothing is removed.
	dryRun bool
}

// delete removes one object.
func (d deleter) delete(ctx context.Context, key string) error {
	if d.dryRun {
		return nil
	}
	if err := d.store.Delete(ctx, key); err != nil {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	return nil
}

// removeTree removes every object under dir (a key without trailing slash) and
// the directory itself on posix.
func (d deleter) removeTree(ctx context.Context, dir string) error {
	if err := storage.ValidateKey(dir); err != nil {
		return err
	}
	if d.dryRun {
		return nil
	}
	var keys []string
	if err := d.store.List(ctx, dir+"/", func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, k := range keys {
		if err := d.store.Delete(ctx, k); err != nil {
			return fmt.Errorf("remove %s: %w", k, err)
		}
	}
	switch d.r.Config.Type {
	case "posix", "cifs", "":
		if d.r.Config.Path == "" {
			return nil
		}
		if err := os.RemoveAll(filepath.Join(d.r.Config.Path, filepath.FromSlash(dir))); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

// backupDirs describes the backup directories under backup/<stanza>/.
type backupDirs struct {
	// manifest and copy report, per label, whether backup.manifest and
	// backup.manifest.copy exist.
	manifest, copy map[string]bool
}

// listBackupDirs lists the backup directories of the stanza.
func listBackupDirs(ctx context.Context, rs *repo.Repository) (backupDirs, error) {
	root := rs.BackupKey("")
	d := backupDirs{manifest: map[string]bool{}, copy: map[string]bool{}}
	if err := rs.Store().List(ctx, root, func(o storage.ObjectInfo) error {
		label, rest, ok := strings.Cut(strings.TrimPrefix(o.Key, root), "/")
		if !ok || !repo.IsBackupLabel(label) {
			return nil
		}
		d.manifest[label] = d.manifest[label] || rest == repo.ManifestFileName
		d.copy[label] = d.copy[label] || rest == repo.ManifestFileName+repo.CopyExt
		return nil
	}); err != nil {
		return d, fmt.Errorf("list %s: %w", root, err)
	}
	return d, nil
}

// reconstruct is pgBackRest's infoBackupLoadFileReconstruct: backups of
// backup.info whose backup.manifest is gone are dropped with their dependents,
// and complete backups on disk missing from backup.info are added back when
// their cluster is in the history and their prior still exists.
func reconstruct(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo, disk backupDirs, log expireLog) error {
	for _, l := range labelsOf(bi) {
		if _, ok := bi.Find(l); !ok || disk.manifest[l] {
			continue
		}
		dep := bi.Dependents(l)
		slices.Sort(dep)
		slices.Reverse(dep)
		for _, d := range dep {
			log.warn(fmt.Sprintf("backup '%s' missing manifest removed from backup.info", d))
			bi.Remove(d)
		}
	}
	var onDisk []string
	for l, ok := range disk.manifest {
		if ok {
			onDisk = append(onDisk, l)
		}
	}
	slices.Sort(onDisk)
	for _, l := range onDisk {
		if _, ok := bi.Find(l); ok {
			continue
		}
		m, err := rs.LoadManifest(ctx, l, bi.CipherPass)
		if err != nil {
			return err
		}
		added := false
		for _, h := range bi.History {
			_, priorOK := bi.Find(m.Prior)
			if m.DB.ID == h.ID && m.DB.SystemID == h.SystemID && m.DB.Version == h.Version && (m.Prior == "" || priorOK) {
				bk, err := repo.BackupFromManifest(m)
				if err != nil {
					return err
				}
				log.warn(fmt.Sprintf("backup '%s' found in repository added to backup.info", l))
				bi.Add(bk)
				added = true
				break
			}
		}
		if !added {
			log.warn(fmt.Sprintf("invalid backup '%s' cannot be added to current backups", m.Label))
		}
	}
	return nil
}

// removeExpiredBackups removes the backup directories that are not in backup.info
// (expired, failed or unfinished backups), newest first.
func removeExpiredBackups(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo, disk backupDirs, del deleter, adhoc string, afterBackup bool, log expireLog) error {
	dirs, copies := disk.manifest, disk.copy
	onDisk := make([]string, 0, len(dirs))
	for l := range dirs {
		onDisk = append(onDisk, l)
	}
	slices.Sort(onDisk)
	keep := ""
	if n := len(onDisk); n > 0 {
		newest := onDisk[n-1]
		resumable := !dirs[newest] && copies[newest]
		current := labelsOf(bi)
		switch {
		case adhoc != "" && resumable:
			// pgBackRest keeps the resumable latest backup unless it may depend on the
			// expired set.
			if !strings.HasPrefix(newest, adhoc[:min(16, len(adhoc))]) {
				keep = newest
			} else if m, err := rs.LoadManifest(ctx, newest, bi.CipherPass); err == nil && slices.Contains(current, m.Prior) {
				keep = newest
			}
		case !afterBackup && !dirs[newest] && (len(current) == 0 || newest > current[len(current)-1]):
			// Without a repository lock, an unfinished directory newer than every
			// backup may be a backup in progress: leave it to the expire that
			// follows the next backup.
			keep = newest
			log.info(fmt.Sprintf("%s: keep unfinished backup %s (a backup may be in progress)", rs.Name(), newest))
		}
	}
	for _, l := range expire.StaleBackupDirs(bi, onDisk, keep) {
		log.info(fmt.Sprintf("%s: remove expired backup %s", rs.Name(), l))
		if err := del.removeTree(ctx, rs.BackupKey(l)); err != nil {
			return err
		}
	}
	return nil
}

func labelsOf(bi *repo.BackupInfo) []string {
	out := make([]string, 0, len(bi.Backups))
	for _, b := range bi.Backups {
		out = append(out, b.Label)
	}
	slices.Sort(out)
	return out
}

// removeExpiredArchive removes the WAL that no remaining backup needs.
func removeExpiredArchive(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo, del deleter, retention int, r Repo, log expireLog) error {
	wp := expire.WALPolicy{
		Retention: retention, Type: repo.BackupType(r.Config.Retention.ArchiveType),
		TimeBased: r.Config.Retention.FullType == "time", Option: r.Name() + "-retention-archive",
	}
	onDisk := map[string][]string{}
	if retention > 0 {
		ai, err := rs.LoadArchiveInfo(ctx)
		if err != nil {
			return cryptoCode(err)
		}
		root := rs.ArchiveKey("")
		if err := rs.Store().List(ctx, root, func(o storage.ObjectInfo) error {
			id, rest, ok := strings.Cut(strings.TrimPrefix(o.Key, root), "/")
			if ok && expire.ArchiveIDDir(id) {
				onDisk[id] = append(onDisk[id], rest)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("list %s: %w", root, err)
		}
		steps, err := expire.WAL(bi, ai, wp, onDisk)
		if err != nil {
			if errors.Is(err, expire.ErrFormat) {
				return withCode(codeExpireFormat, err)
			}
			return err
		}
		return runWALSteps(ctx, rs, del, steps, log)
	}
	steps, err := expire.WAL(bi, nil, wp, nil)
	if err != nil {
		return err
	}
	for _, s := range steps {
		// As in pgBackRest, only the time-based message names the repository.
		if wp.TimeBased {
			log.info(r.Name() + ": " + s.Message)
		} else {
			log.info(s.Message)
		}
	}
	return nil
}

func runWALSteps(ctx context.Context, rs *repo.Repository, del deleter, steps []expire.WALStep, log expireLog) error {
	for _, s := range steps {
		if s.Remove != "" {
			key := rs.ArchiveKey(s.Remove)
			var err error
			if s.Dir {
				err = del.removeTree(ctx, key)
			} else {
				err = del.delete(ctx, key)
			}
			if err != nil {
				return err
			}
		}
		if s.Message != "" {
			log.info(rs.Name() + ": " + s.Message)
		}
	}
	return nil
}

// removeExpiredHistory removes the backup.history manifests older than
// repo-retention-history days.
func removeExpiredHistory(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo, del deleter, days int, log expireLog) error {
	root := rs.BackupKey(repo.HistoryDir + "/")
	var files []string
	if err := rs.Store().List(ctx, root, func(o storage.ObjectInfo) error {
		files = append(files, strings.TrimPrefix(o.Key, root))
		return nil
	}); err != nil {
		return fmt.Errorf("list %s: %w", root, err)
	}
	for _, s := range expire.History(bi, days, time.Now(), time.Local, files) {
		log.info(rs.Name() + ": " + s.Message)
		key := root + s.Path
		if s.Dir {
			if err := del.removeTree(ctx, key); err != nil {
				return err
			}
		} else if err := del.delete(ctx, key); err != nil {
			return err
		}
	}
	return nil
}
