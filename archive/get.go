package archive

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// GetResult describes the copy Get restored.
type GetResult struct {
	// Repo and ArchiveID say where the file was found; Key is its object key.
	Repo      string
	ArchiveID string
	Key       string
	// Size and SHA1 describe the restored content.
	Size int64
	SHA1 string
	// Warnings are the problems met on the way, already logged: repositories
	// that could not be searched, copies that could not be read.
	Warnings []string
	// Prefetched is set when a Prefetcher served the file from its
	// prefetch area; the other fields then describe the fetch.
	Prefetched bool
}

// match is one archived copy of the requested file.
type match struct {
	src       *Source
	archiveID string
	key       string
	name      string // repository file name
	sha1      string // from the name, segments only
	ct        compress.Type
	ctErr     error
}

// Get restores the archived file walName to dest, as archive-get does.
//
// It searches every usable source (in parallel) in each of its archive ids,
// newest first. Sources with Err set and sources whose search fails are
// warned about and skipped. If none can be searched, the error has code 103.
// Copies of a segment with more than one distinct SHA-1 give a
// *DuplicateError. A file found nowhere gives an error wrapping
// ErrNotFound. Otherwise Get tries the copies in source order and falls
// through to the next on a failure. Each copy is decrypted and
// decompressed, and a segment's content must match the SHA-1 in its name.
// The result is written to a temporary file beside dest, synced, and
// renamed to dest. dest's directory must exist. When no copy can be read,
// the error has code 42. A failure to write locally ends the search with
// code 64.
func Get(ctx context.Context, sources []Source, walName, dest string, log *zap.Logger) (GetResult, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var res GetResult
	kind, err := ParseName(walName)
	if err != nil {
		return res, fmt.Errorf("archive-get %s: %w", walName, err)
	}
	warn := func(msg string) {
		res.Warnings = append(res.Warnings, msg)
		log.Warn(msg)
	}

	found := make([][]match, len(sources))
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	for i := range sources {
		s := &sources[i]
		if errs[i] = s.Err; errs[i] != nil {
			continue
		}
		wg.Go(func() { found[i], errs[i] = find(ctx, s, walName, kind) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	var matches []match
	var problems []string
	for i := range sources {
		if errs[i] != nil {
			msg := repoPrefixed(sources[i].Name(), errs[i])
			problems = append(problems, msg)
			warn(msg)
			continue
		}
		matches = append(matches, found[i]...)
	}
	if len(problems) == len(sources) {
		return res, withCode(CodeRepoInvalid, fmt.Errorf("unable to find a valid repository:\n%s", strings.Join(problems, "\n")))
	}
	if len(matches) == 0 {
		return res, fmt.Errorf("unable to find %s in the archive: %w", walName, ErrNotFound)
	}
	if kind.IsSegment() {
		if err := checkDuplicates(walName, matches); err != nil {
			return res, err
		}
	}

	var failures []string
	for _, m := range matches {
		size, sum, err := fetch(ctx, m, kind, dest)
		if err == nil {
			res.Repo, res.ArchiveID, res.Key, res.Size, res.SHA1 = m.src.Name(), m.archiveID, m.key, size, sum
			return res, nil
		}
		var we *writeError
		if errors.As(err, &we) || ctx.Err() != nil {
			return res, err
		}
		msg := repoPrefixed(m.src.Name(), fmt.Errorf("%s: %w", m.key, err))
		failures = append(failures, msg)
		warn(msg)
	}
	return res, withCode(CodeFileRead, fmt.Errorf("unable to get %s:\n%s", walName, strings.Join(failures, "\n")))
}

// find lists the copies of walName in every archive id of s.
func find(ctx context.Context, s *Source, walName string, kind Kind) ([]match, error) {
	var out []match
	for _, id := range s.ArchiveIDs {
		if !kind.IsSegment() {
			key := s.Repo.ArchiveKey(repo.ArchivePath(id, walName))
			_, err := s.Repo.Store().Stat(ctx, key)
			switch {
			case err == nil:
				out = append(out, match{src: s, archiveID: id, key: key, name: walName, ct: compress.None})
			case !errors.Is(err, storage.ErrNotExist):
				return out, fmt.Errorf("stat %s: %w", key, err)
			}
			continue
		}
		t := Target{Repo: s.Repo, ArchiveID: id}
		names, err := listSegment(ctx, &t, walName)
		if err != nil {
			return out, err
		}
		prefix := s.Repo.ArchiveKey(repo.ArchivePath(id, walName))
		for _, n := range names {
			wf, err := repo.ParseWALRepoFileName(n)
			if err != nil {
				return out, err // listSegment only returns names that parse
			}
			m := match{src: s, archiveID: id, key: path.Dir(prefix) + "/" + n, name: n, sha1: wf.SHA1}
			m.ct, m.ctErr = wf.Compress.Codec()
			out = append(out, m)
		}
	}
	return out, nil
}

// checkDuplicates refuses copies of a segment with different SHA-1s.
func checkDuplicates(walName string, matches []match) error {
	for _, m := range matches[1:] {
		if m.sha1 != matches[0].sha1 {
			e := &DuplicateError{WAL: walName}
			for _, m := range matches {
				e.Matches = append(e.Matches, m.src.Name()+": "+m.archiveID+"/"+m.name)
			}
			return e
		}
	}
	return nil
}

// writeError marks a failure to write the destination: it is local, so
// trying another copy cannot help.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// Code returns 64 (FileWriteError).
func (e *writeError) Code() int { return CodeFileWrite }

// destWriter writes to the temporary file, marking its errors as local.
type destWriter struct{ f *os.File }

func (w destWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeError{fmt.Errorf("write %s: %w", w.f.Name(), err)}
	}
	return n, err
}

// fetch copies one archived copy to dest atomically and returns its size
// and SHA-1.
func fetch(ctx context.Context, m match, kind Kind, dest string) (int64, string, error) {
	if m.ctErr != nil {
		return 0, "", m.ctErr
	}
	rc, err := m.src.Repo.OpenFile(ctx, m.key, storage.Range{}, m.src.Pass, m.ct)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()

	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".pgsidecar-*")
	if err != nil {
		return 0, "", &writeError{fmt.Errorf("create a temporary file for %s: %w", dest, err)}
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha1.New()
	buf := make([]byte, 1<<20)
	size, err := io.CopyBuffer(io.MultiWriter(destWriter{tmp}, h), struct{ io.Reader }{rc}, buf)
	if err != nil {
		return size, "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if kind.IsSegment() && sum != m.sha1 {
		return size, sum, fmt.Errorf("content SHA-1 %s does not match the name: %w", sum, repo.ErrChecksumMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return size, sum, &writeError{fmt.Errorf("fsync %s: %w", tmp.Name(), err)}
	}
	if err := tmp.Close(); err != nil {
		return size, sum, &writeError{fmt.Errorf("close %s: %w", tmp.Name(), err)}
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		_ = os.Remove(tmp.Name())
		done = true
		return size, sum, &writeError{fmt.Errorf("rename into %s: %w", dest, err)}
	}
	done = true
	if err := syncDir(dir); err != nil {
		return size, sum, &writeError{err}
	}
	return size, sum, nil
}

// syncDir fsyncs a directory so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
