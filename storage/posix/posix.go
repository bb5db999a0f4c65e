// Package posix is the storage driver for a mounted volume (a Kubernetes
// PersistentVolume, NFS, a local disk). Writes go to a temporary file in the
// destination directory, are fsynced, renamed into place (or hard-linked, for
// a conditional create) and the directory is fsynced, so that a crash never
// leaves a partial object under its final name.
package posix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pgsidecar/pgsidecar/storage"
)

// tmpMarker is part of the name of every temporary file; List never shows
// such files and keys may not contain it.
const tmpMarker = ".pgsidecar-tmp-"

// Config configures a posix store.
type Config struct {
	// Root is the directory that holds the repository (repoN-path).
	Root string
	// FileMode and DirMode are the modes of created files and directories;
	// zero means 0640 and 0750, as pgBackRest creates them.
	FileMode, DirMode fs.FileMode
}

// Store is a storage.Store on a local or mounted file system.
type Store struct {
	root     string
	fileMode fs.FileMode
	dirMode  fs.FileMode
}

var _ storage.Store = (*Store)(nil)

// New returns a store rooted at cfg.Root, creating the directory if needed.
func New(cfg Config) (*Store, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("posix repository path %q must be absolute: %w", cfg.Root, storage.ErrInvalid)
	}
	s := &Store{root: filepath.Clean(cfg.Root), fileMode: cfg.FileMode, dirMode: cfg.DirMode}
	if s.fileMode == 0 {
		s.fileMode = 0o640
	}
	if s.dirMode == 0 {
		s.dirMode = 0o750
	}
	if err := os.MkdirAll(s.root, s.dirMode); err != nil {
		return nil, fmt.Errorf("create repository directory %s: %w", s.root, translate(err))
	}
	return s, nil
}

// translate maps file-system errors to the storage sentinels, keeping err.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %w", storage.ErrNotExist, err)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %w", storage.ErrExist, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %w", storage.ErrPermission, err)
	}
	return err
}

func (s *Store) path(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	if strings.Contains(key, tmpMarker) {
		return "", fmt.Errorf("key %q contains the reserved %q: %w", key, tmpMarker, storage.ErrInvalid)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.write(ctx, key, r, false)
}

// PutIfAbsent implements storage.Store. The complete temporary file is
// hard-linked to the key, which fails atomically when the key exists.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.write(ctx, key, r, true)
}

func (s *Store) write(ctx context.Context, key string, r io.Reader, exclusive bool) (err error) {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(dst)
	if err := s.mkdirAll(dir); err != nil {
		return fmt.Errorf("create directory for %s: %w", key, err)
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := dst + tmpMarker + hex.EncodeToString(suffix[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, s.fileMode)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, translate(err))
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return fmt.Errorf("write %s: %w", key, translate(err))
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", key, translate(err))
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", key, translate(err))
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if exclusive {
		if err = os.Link(tmp, dst); err != nil {
			return fmt.Errorf("create %s: %w", key, translate(err))
		}
		// The object is in place; a failure to remove the temp name only
		// leaves an invisible file behind.
		_ = os.Remove(tmp)
	} else if err = os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("rename into %s: %w", key, translate(err))
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("fsync directory of %s: %w", key, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents, fsyncing each parent that
// got a new entry so the new path survives a crash.
func (s *Store) mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && len(parent) >= len(s.root) {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, s.dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return translate(err)
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return translate(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return translate(err)
	}
	return nil
}

// ctxReader stops a copy as soon as ctx is done.
type ctxReader struct {
	ctx context.Context //nolint:containedctx // lives for one Put call
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, translate(err))
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	if st.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: is a directory: %w", key, storage.ErrNotExist)
	}
	if rng.IsZero() {
		return &fileReader{ctx: ctx, f: f, r: f}, nil
	}
	n := st.Size() - rng.Offset
	if rng.Length > 0 && rng.Length < n {
		n = rng.Length
	}
	if n < 0 {
		n = 0
	}
	return &fileReader{ctx: ctx, f: f, r: io.NewSectionReader(f, rng.Offset, n)}, nil
}

type fileReader struct {
	ctx context.Context //nolint:containedctx // lives as long as the reader
	f   *os.File
	r   io.Reader
}

func (fr *fileReader) Read(p []byte) (int, error) {
	if err := fr.ctx.Err(); err != nil {
		return 0, err
	}
	return fr.r.Read(p)
}

func (fr *fileReader) Close() error { return fr.f.Close() }

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	if st.IsDir() {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: is a directory: %w", key, storage.ErrNotExist)
	}
	return storage.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements storage.Store. It walks only the directory that holds
// the prefix's last complete element, in byte order of keys.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	return s.walk(ctx, base, prefix, fn)
}

// walk lists directory rel (a key prefix without trailing slash, "" for the
// root) and calls fn for files whose key starts with prefix, descending into
// directories in key order.
func (s *Store) walk(ctx context.Context, rel, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(s.root, filepath.FromSlash(rel))
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("list %s: %w", rel, translate(err))
	}
	// Keys sort by their bytes: a directory "a" sorts as "a/", after "a-x".
	type item struct {
		key   string
		sort  string
		isDir bool
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		if strings.Contains(e.Name(), tmpMarker) {
			continue
		}
		key := e.Name()
		if rel != "" {
			key = rel + "/" + key
		}
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			// Symlinks (pgBackRest's "latest") are not objects.
			continue
		}
		it := item{key: key, sort: key, isDir: isDir}
		if isDir {
			it.sort = key + "/"
		}
		if !strings.HasPrefix(it.sort, prefix) && !strings.HasPrefix(prefix, it.sort) {
			continue
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.sort, b.sort) })
	for _, it := range items {
		if it.isDir {
			if err := s.walk(ctx, it.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(it.key, prefix) {
			continue
		}
		st, err := os.Stat(filepath.Join(s.root, filepath.FromSlash(it.key)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			return fmt.Errorf("stat %s: %w", it.key, translate(err))
		}
		if err := fn(storage.ObjectInfo{Key: it.key, Size: st.Size(), ModTime: st.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements storage.Store. Directories left empty are kept; they
// are invisible to List.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, translate(err))
	}
	return nil
}

// Close implements storage.Store; a posix store holds no resources.
func (s *Store) Close() error { return nil }
