package restore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// ErrRunning is returned when the data directory holds postmaster.pid.
var ErrRunning = errors.New("a postmaster.pid is present: the cluster appears to be running")

// ErrNotEmpty is returned when a directory to restore into is not empty and
// neither delta nor force was asked for.
var ErrNotEmpty = errors.New("directory is not empty: use --delta or --force")

// Options configure a restore.
type Options struct {
	Mapping
	// Delta keeps files whose size and SHA-1 match the manifest and removes
	// what the manifest does not have.
	Delta bool
	// Force allows restoring into a non-empty directory: without Delta,
	// every file is written again; with Delta, files are compared by size
	// and timestamp instead of SHA-1.
	Force bool
	// ProcessMax is the number of parallel downloads (at least 1).
	ProcessMax int
	// SmallFileWorkers download files under smallFileSize beside the
	// ProcessMax workers. From an object store each small file costs a
	// round trip rather than CPU, so more of them in flight shorten the
	// restore; 0 leaves every file to the ProcessMax workers.
	SmallFileWorkers int
	// Preserve lists file names relative to pg_data that the restore leaves
	// as they are: the clean keeps them and the backup's copy is not written
	// (the recovery files of --type=preserve).
	Preserve []string
	// DBInclude and DBExclude select databases (names or oids): the files
	// of the databases left out are restored as zeroed sparse files, as
	// pgBackRest does, so that the cluster starts and they can be dropped.
	DBInclude, DBExclude []string
	// Log receives progress; nil logs nothing.
	Log *zap.Logger
}

// Stats counts what a restore did.
type Stats struct {
	// Files is the number of files in the manifest.
	Files int
	// Downloaded counts the files read from the repository, Kept the files a
	// delta restore left as they were, Empty the zero-length files created.
	Downloaded, Kept, Empty int
	// Bytes is the size of the files downloaded.
	Bytes int64
	// Zeroed counts the files of excluded databases written as zeroes.
	Zeroed int
	// Removed counts the entries the delta clean removed.
	Removed int
}

// runWorkers calls one for every file (sorted largest first): workers
// goroutines take the files in order, then smallWorkers more take the small
// files (under smallFileSize) from the other end, so that the latency-bound
// small downloads overlap the CPU-bound large ones. The first error stops the
// others and is returned.
func runWorkers(ctx context.Context, files []*repo.ManifestFile, workers, smallWorkers int, one func(context.Context, *repo.ManifestFile) error) error {
	var mu sync.Mutex
	lo, hi := 0, len(files) // files[lo:hi] are left
	take := func(small bool) *repo.ManifestFile {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case lo >= hi:
			return nil
		case small:
			if files[hi-1].Size >= smallFileSize {
				return nil
			}
			hi--
			return files[hi]
		}
		lo++
		return files[lo-1]
	}
	g, gctx := errgroup.WithContext(ctx)
	work := func(small bool) func() error {
		return func() error {
			for f := take(small); f != nil; f = take(small) {
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := one(gctx, f); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for range workers {
		g.Go(work(false))
	}
	for range smallWorkers {
		g.Go(work(true))
	}
	return g.Wait()
}

// smallFileSize is the size under which SmallFileWorkers take a file.
const smallFileSize = 1 << 20

// copyBufferSize is the buffer of each download; memory is bounded by
// ProcessMax times this plus the decoders' windows.
const copyBufferSize = 256 << 10

// Run restores the backup that m describes from rs into the directories opts
// names. Every manifest name is validated before anything is written.
func Run(ctx context.Context, rs *repo.Repository, m *repo.Manifest, opts Options) (Stats, error) {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	var st Stats
	l, err := newLayout(m, opts.Mapping)
	if err != nil {
		return st, err
	}
	ct, err := m.Options.CompressType.Codec()
	if err != nil {
		return st, err
	}
	zeroedDBs, err := zeroedDatabases(m, opts.DBInclude, opts.DBExclude)
	if err != nil {
		return st, err
	}
	if len(zeroedDBs) > 0 {
		log.Info("databases excluded (zeroed) from selective restore", zap.Strings("oids", zeroedDBs))
	}
	isZeroed := zeroMatcher(m, zeroedDBs)
	for i := range m.Files {
		if m.Files[i].BlockIncrSize != 0 {
			return st, fmt.Errorf("file %s: block-incremental backups are not restored by pgsidecar", m.Files[i].Name)
		}
	}
	dataDir := l.roots[0].dir
	// tablespace_map is not restored, so PostgreSQL does not rewrite the
	// links the restore creates (perhaps mapped); preserved files are not
	// restored either.
	skip := map[string]bool{"pg_data/tablespace_map": true}
	for _, p := range opts.Preserve {
		skip["pg_data/"+filepath.ToSlash(p)] = true
	}
	m = withoutFiles(m, skip)
	if _, err := os.Lstat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
		return st, fmt.Errorf("restore into %s: %w", dataDir, ErrRunning)
	}
	delta, force := opts.Delta, opts.Force
	if delta || force {
		if !exists(filepath.Join(dataDir, "PG_VERSION")) && !exists(filepath.Join(dataDir, "backup.manifest")) {
			log.Warn("--delta or --force specified but unable to find 'PG_VERSION' or 'backup.manifest' in the data directory: the options are ignored",
				zap.String("pg1-path", dataDir))
			delta, force = false, false
		}
	}
	exp := expected(m, l)
	if !delta && !force {
		for _, r := range l.roots {
			if err := checkEmpty(r); err != nil {
				return st, err
			}
		}
	} else {
		preserve := map[string]bool{}
		for _, p := range append(slices.Clone(opts.Preserve), manifestFile) {
			preserve[filepath.Join(dataDir, p)] = true
		}
		for _, r := range l.roots {
			if r.file != "" {
				continue
			}
			n, err := clean(r.clean, exp, preserve)
			st.Removed += n
			if err != nil {
				return st, err
			}
		}
		log.Info("delta clean done", zap.Int("removed", st.Removed))
		// Without pg_control the cluster cannot start until the restore completes.
		if err := os.Remove(filepath.Join(dataDir, "global", "pg_control")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("remove pg_control: %w", err)
		}
	}
	// A copy of the manifest marks an incomplete restore, so a later
	// --delta recognizes the directory (pgBackRest does the same).
	manifestCopy := filepath.Join(dataDir, manifestFile)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return st, fmt.Errorf("create %s: %w", dataDir, err)
	}
	data, err := m.Save()
	if err == nil {
		err = os.WriteFile(manifestCopy, data, 0o600)
	}
	if err != nil {
		return st, fmt.Errorf("write the manifest copy %s: %w", manifestCopy, err)
	}
	// Paths (parents first), owner-writable until the files are in.
	paths := slices.Clone(m.Paths)
	slices.SortFunc(paths, func(a, b repo.ManifestPath) int { return cmpStr(a.Name, b.Name) })
	for _, r := range l.roots {
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return st, fmt.Errorf("create %s: %w", r.dir, err)
		}
	}
	for _, p := range paths {
		dir, _ := l.fsPath(p.Name)
		if dir == "" {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return st, fmt.Errorf("create path %s: %w", dir, err)
		}
	}
	for _, r := range l.roots[1:] {
		at, dest := l.linkPath(r)
		if cur, err := os.Readlink(at); err == nil && cur == dest {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(at), 0o700); err != nil {
			return st, fmt.Errorf("create %s: %w", filepath.Dir(at), err)
		}
		if err := os.Symlink(dest, at); err != nil {
			return st, fmt.Errorf("create link %s: %w", at, err)
		}
	}
	// Files, largest first as pgBackRest orders them.
	files := make([]*repo.ManifestFile, len(m.Files))
	for i := range m.Files {
		files[i] = &m.Files[i]
	}
	slices.SortStableFunc(files, func(a, b *repo.ManifestFile) int {
		switch {
		case a.Size > b.Size:
			return -1
		case a.Size < b.Size:
			return 1
		}
		return cmpStr(a.Name, b.Name)
	})
	st.Files = len(files)
	root := os.Geteuid() == 0
	var downloaded, kept, empty, zeroed atomic.Int64
	var bytes atomic.Int64
	// pg_control is written under a temporary name and goes in last, so an
	// interrupted restore does not start.
	var control string
	if slices.ContainsFunc(files, func(f *repo.ManifestFile) bool { return f.Name == pgControlName }) {
		control, _ = l.fsPath(pgControlName)
	}
	one := func(ctx context.Context, f *repo.ManifestFile) error {
		write, _ := l.fsPath(f.Name)
		if f.Name == pgControlName {
			write += tmpExt
		}
		if isZeroed(f.Name) {
			zeroed.Add(1)
			if err := writeZeroed(write, int64(f.Size)); err != nil {
				return err
			}
			return finishFile(write, f, root)
		}
		if delta && f.Name != pgControlName {
			ok, err := matches(write, f, force)
			if err != nil {
				return err
			}
			if ok {
				kept.Add(1)
				return finishFile(write, f, root)
			}
		}
		if f.Size == 0 {
			empty.Add(1)
			if err := writeEmpty(write); err != nil {
				return err
			}
			return finishFile(write, f, root)
		}
		if err := download(ctx, rs, m, ct, f, write); err != nil {
			return err
		}
		downloaded.Add(1)
		bytes.Add(int64(f.Size))
		return finishFile(write, f, root)
	}
	err = runWorkers(ctx, files, max(opts.ProcessMax, 1), opts.SmallFileWorkers, one)
	st.Downloaded, st.Kept, st.Empty, st.Bytes = int(downloaded.Load()), int(kept.Load()), int(empty.Load()), bytes.Load()
	st.Zeroed = int(zeroed.Load())
	if err != nil {
		return st, err
	}
	// Path modes and owners, deepest first.
	for i := len(paths) - 1; i >= 0; i-- {
		p := paths[i]
		dir, _ := l.fsPath(p.Name)
		if dir == "" {
			continue
		}
		if err := os.Chmod(dir, fs.FileMode(p.Mode)); err != nil {
			return st, fmt.Errorf("set mode of %s: %w", dir, err)
		}
		if root {
			if err := chown(dir, p.User, p.Group); err != nil {
				return st, err
			}
		}
	}
	if root {
		for _, k := range m.Links {
			if at, ok := linkAt(l, k.Name); ok {
				if err := chown(at, k.User, k.Group); err != nil {
					return st, err
				}
			}
		}
	}
	// Every file, directory and link is durable before pg_control makes the
	// cluster startable.
	if err := l.syncRoots(); err != nil {
		return st, err
	}
	if control != "" {
		if err := os.Rename(control+tmpExt, control); err != nil {
			return st, fmt.Errorf("install pg_control: %w", err)
		}
		if err := syncDir(filepath.Dir(control)); err != nil {
			return st, err
		}
	}
	if err := os.Remove(manifestCopy); err != nil {
		return st, fmt.Errorf("remove %s: %w", manifestCopy, err)
	}
	if err := syncDir(dataDir); err != nil {
		return st, err
	}
	log.Info("restore done", zap.String("label", m.Label), zap.Int("files", st.Files),
		zap.Int("downloaded", st.Downloaded), zap.Int("kept", st.Kept), zap.Int("empty", st.Empty), zap.Int("zeroed", st.Zeroed), zap.Int64("bytes", st.Bytes))
	return st, nil
}

// withoutFiles returns m, or a shallow copy of it without the files skip names.
func withoutFiles(m *repo.Manifest, skip map[string]bool) *repo.Manifest {
	if !slices.ContainsFunc(m.Files, func(f repo.ManifestFile) bool { return skip[f.Name] }) {
		return m
	}
	c := *m
	c.Files = slices.DeleteFunc(slices.Clone(m.Files), func(f repo.ManifestFile) bool { return skip[f.Name] })
	return &c
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// linkAt returns where the symlink named by manifest link name was created.
func linkAt(l *layout, name string) (string, bool) {
	for _, r := range l.roots[1:] {
		if r.link == name {
			at, _ := l.linkPath(r)
			return at, true
		}
	}
	return "", false
}

// checkEmpty fails when a root directory (or a file link's file) exists and is not empty.
func checkEmpty(r root) error {
	if r.file != "" {
		if exists(filepath.Join(r.dir, r.file)) {
			return fmt.Errorf("%s: %w", filepath.Join(r.dir, r.file), ErrNotEmpty)
		}
		return nil
	}
	ents, err := os.ReadDir(r.clean)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", r.clean, err)
	case len(ents) > 0:
		return fmt.Errorf("%s: %w", r.clean, ErrNotEmpty)
	}
	return nil
}

// entryKind is what the manifest expects at a path on disk.
type entryKind struct {
	kind fs.FileMode // 0 regular file, fs.ModeDir, fs.ModeSymlink
	dest string      // link destination
}

// expected maps every path on disk the restore creates to its kind.
func expected(m *repo.Manifest, l *layout) map[string]entryKind {
	exp := map[string]entryKind{}
	for _, r := range l.roots {
		if r.file == "" {
			exp[r.dir] = entryKind{kind: fs.ModeDir}
		}
	}
	for _, p := range m.Paths {
		dir, _ := l.fsPath(p.Name)
		if dir != "" {
			exp[dir] = entryKind{kind: fs.ModeDir}
		}
	}
	for i := range m.Files {
		p, _ := l.fsPath(m.Files[i].Name)
		exp[p] = entryKind{}
		if m.Files[i].Name == pgControlName {
			exp[p+tmpExt] = entryKind{}
		}
	}
	for _, r := range l.roots[1:] {
		at, dest := l.linkPath(r)
		exp[at] = entryKind{kind: fs.ModeSymlink, dest: dest}
	}
	return exp
}

// clean removes, below dir, every entry the restore does not create and
// every entry of the wrong kind, without following links. It returns the
// number of entries removed.
func clean(dir string, exp map[string]entryKind, preserve map[string]bool) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if preserve[p] {
			continue
		}
		want, ok := exp[p]
		typ := e.Type() & (fs.ModeDir | fs.ModeSymlink | fs.ModeType)
		keep := ok && typ == want.kind
		if keep && typ == fs.ModeSymlink {
			cur, err := os.Readlink(p)
			keep = err == nil && cur == want.dest
		}
		if !keep {
			if err := os.RemoveAll(p); err != nil {
				return n, fmt.Errorf("remove %s: %w", p, err)
			}
			n++
			continue
		}
		if typ == fs.ModeDir {
			k, err := clean(p, exp, preserve)
			n += k
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// matches reports whether the regular file at p has f's size and SHA-1 (or,
// with byTime, its size and modification time).
func matches(p string, f *repo.ManifestFile, byTime bool) (bool, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() || uint64(fi.Size()) != f.Size {
		return false, nil
	}
	if byTime {
		return fi.ModTime().Unix() == f.Timestamp, nil
	}
	if f.Checksum == "" {
		return false, nil
	}
	fh, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", p, err)
	}
	defer fh.Close()
	h := sha1.New()
	if _, err := io.Copy(h, fh); err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.Checksum, nil
}

func writeEmpty(p string) error {
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

// writeZeroed writes a sparse file of size zero bytes.
func writeZeroed(p string, size int64) error {
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	err = fh.Truncate(size)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("zero %s: %w", p, err)
	}
	return nil
}

// download streams f from the repository into p, checking size and SHA-1.
func download(ctx context.Context, rs *repo.Repository, m *repo.Manifest, ct compress.Type, f *repo.ManifestFile, p string) error {
	rel, err := m.RepoPath(f)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	key := rs.BackupKey(rel)
	rng := storage.Range{}
	if f.BundleID != 0 {
		rng = storage.Range{Offset: int64(f.BundleOffset), Length: int64(f.RepoSize)}
	}
	rc, err := rs.OpenFile(ctx, key, rng, m.CipherPass, ct)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	defer rc.Close()
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	h := sha1.New()
	// No fsync per file: the restore flushes each file system once at the
	// end (syncRoots), before pg_control goes in.
	src := io.LimitReader(rc, int64(f.Size)+1)
	var n int64
	if f.Size >= pipeMinSize {
		n, err = pipeCopy(withWriteback(fh), h, src)
	} else {
		n, err = io.CopyBuffer(io.MultiWriter(fh, h), src, make([]byte, min(copyBufferSize, f.Size+1)))
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Name, err)
	}
	if uint64(n) != f.Size {
		return fmt.Errorf("restore %s: size %d, manifest says %d (%s): %w", f.Name, n, f.Size, key, repo.ErrChecksumMismatch)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); f.Checksum != "" && sum != f.Checksum {
		return fmt.Errorf("restore %s: SHA-1 %s, manifest says %s (%s): %w", f.Name, sum, f.Checksum, key, repo.ErrChecksumMismatch)
	}
	return nil
}

// finishFile sets the manifest's mode, timestamp and (as root) owner.
func finishFile(p string, f *repo.ManifestFile, root bool) error {
	if err := os.Chmod(p, fs.FileMode(f.Mode)); err != nil {
		return fmt.Errorf("set mode of %s: %w", p, err)
	}
	t := time.Unix(f.Timestamp, 0)
	if err := os.Chtimes(p, t, t); err != nil {
		return fmt.Errorf("set time of %s: %w", p, err)
	}
	if root {
		return chown(p, f.User, f.Group)
	}
	return nil
}

// chown gives p the named owner and group when they exist on this host.
func chown(p, userName, groupName string) error {
	uid, gid := -1, -1
	if userName != "" {
		if u, err := user.Lookup(userName); err == nil {
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if groupName != "" {
		if g, err := user.LookupGroup(groupName); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	if uid < 0 && gid < 0 {
		return nil
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		return fmt.Errorf("set owner of %s: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	fh, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer fh.Close()
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
