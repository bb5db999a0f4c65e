package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// codeVerify is the exit code of a verify that found problems (pgBackRest's
// command error, 104).
const codeVerify = 104

// VerifyReport is what verify found in one repository.
type VerifyReport struct {
	Repo string
	// WAL counts the archived WAL files checked; Files the backup files.
	WAL, Files int
	// Backups lists the backup labels checked.
	Backups []string
	// Problems names every bad object and what is wrong with it.
	Problems []string
}

// reporter collects problems from concurrent checks.
type reporter struct {
	mu       sync.Mutex
	problems []string
}

func (r *reporter) addf(format string, args ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// Verify reads back every archived WAL file and every file of every
// backup in each repository: it decrypts, decompresses and checks each one
// against the SHA-1 and size that name or describe it. It prints a summary
// and fails (exit 104) naming each bad object when any check fails.
func Verify(ctx context.Context, cfg *config.Config, repos []Repo, log *zap.Logger, out io.Writer) error {
	var bad int
	for _, r := range repos {
		rep, err := VerifyRepo(ctx, cfg, r, log)
		if err != nil {
			return fmt.Errorf("verify %s: %w", r.Name(), err)
		}
		fmt.Fprintf(out, "%s: %d WAL files, %d backups (%d files) checked", rep.Repo, rep.WAL, len(rep.Backups), rep.Files)
		if len(rep.Problems) == 0 {
			fmt.Fprintln(out, ": ok")
			continue
		}
		fmt.Fprintf(out, ": %d problems\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(out, "  %s\n", p)
		}
		bad += len(rep.Problems)
	}
	if bad > 0 {
		return withCode(codeVerify, fmt.Errorf("verify found %d problems", bad))
	}
	return nil
}

// VerifyRepo checks one repository; problems with objects are reported,
// not returned. An error means the repository could not be read at all.
func VerifyRepo(ctx context.Context, cfg *config.Config, r Repo, log *zap.Logger) (VerifyReport, error) {
	rs := openStanza(cfg, r)
	rep := VerifyReport{Repo: r.Name()}
	ai, bi, err := loadStanzaInfo(ctx, rs)
	if err != nil {
		return rep, err
	}
	workers := max(cfg.ProcessMax, 1)
	var pr reporter
	if rep.WAL, err = verifyWAL(ctx, rs, ai, workers, &pr); err != nil {
		return rep, err
	}
	if rep.Backups, rep.Files, err = verifyBackups(ctx, rs, bi, cfg.Set, workers, &pr, log); err != nil {
		return rep, err
	}
	slices.Sort(pr.problems)
	rep.Problems = pr.problems
	return rep, nil
}

// verifyWAL checks every file under archive/<stanza>/: segments against the
// SHA-1 in their name, history and backup-history files by decrypting them.
func verifyWAL(ctx context.Context, rs *repo.Repository, ai *repo.ArchiveInfo, workers int, pr *reporter) (int, error) {
	var keys []string
	prefix := rs.ArchiveKey("")
	err := rs.Store().List(ctx, prefix, func(oi storage.ObjectInfo) error {
		rel := strings.TrimPrefix(oi.Key, prefix)
		if rel == repo.ArchiveInfoFile || rel == repo.ArchiveInfoFile+repo.CopyExt {
			return nil
		}
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, key := range keys {
		g.Go(func() error {
			checkWALFile(gctx, rs, ai.CipherPass, key, pr)
			return gctx.Err()
		})
	}
	return len(keys), g.Wait()
}

func checkWALFile(ctx context.Context, rs *repo.Repository, pass, key string, pr *reporter) {
	name := path.Base(key)
	wf, err := repo.ParseWALRepoFileName(name)
	if err != nil {
		// History and backup-history files are stored whole, uncompressed.
		if repo.IsTimelineHistory(name) || repo.IsBackupHistoryFile(name) {
			if _, err := rs.CheckFile(ctx, key, storage.Range{}, pass, compress.None); err != nil {
				pr.addf("%s: %v", key, err)
			}
			return
		}
		pr.addf("%s: not a WAL, history or backup-history file", key)
		return
	}
	ct, err := wf.Compress.Codec()
	if err != nil {
		pr.addf("%s: %v", key, err)
		return
	}
	got, err := rs.CheckFile(ctx, key, storage.Range{}, pass, ct)
	switch {
	case err != nil:
		pr.addf("%s: %v", key, err)
	case got.SHA1 != wf.SHA1:
		pr.addf("%s: content SHA-1 %s does not match the name (%v)", key, got.SHA1, repo.ErrChecksumMismatch)
	case !wf.Partial && got.Size&(got.Size-1) != 0:
		pr.addf("%s: size %d is not a WAL segment size", key, got.Size)
	}
}

// verifyBackups checks the files of every backup (or only set, when given).
func verifyBackups(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo, set string, workers int, pr *reporter, log *zap.Logger) ([]string, int, error) {
	var labels []string
	files := 0
	for _, b := range bi.Backups {
		if set != "" && b.Label != set {
			continue
		}
		labels = append(labels, b.Label)
		m, err := rs.LoadManifest(ctx, b.Label, bi.CipherPass)
		if err != nil {
			pr.addf("backup %s: %v", b.Label, err)
			continue
		}
		n, err := verifyBackupFiles(ctx, rs, m, workers, pr)
		if err != nil {
			return labels, files, err
		}
		log.Debug("backup verified", zap.String("repo", rs.Name()), zap.String("label", b.Label), zap.Int("files", n))
		files += n
	}
	if set != "" && len(labels) == 0 {
		return nil, 0, withCode(75, fmt.Errorf("--set=%s: no such backup in %s", set, rs.Name()))
	}
	return labels, files, nil
}

func verifyBackupFiles(ctx context.Context, rs *repo.Repository, m *repo.Manifest, workers int, pr *reporter) (int, error) {
	ct, err := m.Options.CompressType.Codec()
	if err != nil {
		pr.addf("backup %s: %v", m.Label, err)
		return 0, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	n := 0
	for i := range m.Files {
		f := &m.Files[i]
		if f.BlockIncrSize != 0 {
			pr.addf("backup %s: %s: block-incremental files are not verified by pgsidecar yet", m.Label, f.Name)
			continue
		}
		if f.Size == 0 && f.BundleID != 0 {
			continue // bundled empty files are not stored
		}
		if f.Size == 0 && f.RepoSize == 0 {
			continue
		}
		rel, err := m.RepoPath(f)
		if err != nil {
			pr.addf("backup %s: %s: %v", m.Label, f.Name, err)
			continue
		}
		key := rs.BackupKey(rel)
		rng := storage.Range{}
		if f.BundleID != 0 {
			rng = storage.Range{Offset: int64(f.BundleOffset), Length: int64(f.RepoSize)}
		}
		n++
		g.Go(func() error {
			got, err := rs.CheckFile(gctx, key, rng, m.CipherPass, ct)
			switch {
			case errors.Is(err, storage.ErrNotExist):
				pr.addf("backup %s: %s: missing (%s)", m.Label, f.Name, key)
			case err != nil:
				pr.addf("backup %s: %s: %v", m.Label, f.Name, err)
			case uint64(got.Size) != f.Size:
				pr.addf("backup %s: %s: size %d, manifest says %d (%s)", m.Label, f.Name, got.Size, f.Size, key)
			case f.Checksum != "" && got.SHA1 != f.Checksum:
				pr.addf("backup %s: %s: SHA-1 %s, manifest says %s (%s): %v", m.Label, f.Name, got.SHA1, f.Checksum, key, repo.ErrChecksumMismatch)
			}
			return gctx.Err()
		})
	}
	return n, g.Wait()
}
