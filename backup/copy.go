package backup

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// copyBufferSize is the read size of the copy pipeline.
const copyBufferSize = 256 << 10

// copier stores the files of one backup.
type copier struct {
	store  storage.Store
	prefix string // backup/<stanza>/<label>/
	ext    string
	codec  compress.Type
	level  int
	pass   string // the manifest's cipher-pass; "" when not encrypted
	// targets maps manifest target names to their directory (pg_data, pg_tblspc/<oid>,
	// linked directories) for locating files.
	targets []targetDir
	log     *zap.Logger
	// progress, when set, receives the bytes copied of the bytes to copy.
	progress func(done, total uint64)
	// bundle is repo-bundle: files of at most bundleLimit bytes are stored in
	// bundles of up to bundleSize bytes (original sizes) at bundleKey(id).
	bundle                  bool
	bundleSize, bundleLimit uint64
	bundleKey               func(id uint64) string
}

// targetDir is where the files under a manifest name prefix are on disk.
type targetDir struct {
	prefix string // "pg_data/", "pg_tblspc/16384/", "pg_data/pg_wal/"
	dir    string
}

// newTargetDirs resolves manifest names to disk paths through the data directory:
// pg_data/x is <pgPath>/x; pg_tblspc/<oid>/x is <pgPath>/pg_tblspc/<oid>/x (through the
// tablespace link).
func newTargetDirs(pgPath string) []targetDir {
	return []targetDir{
		{prefix: repo.TargetPGData + "/", dir: pgPath},
		{prefix: repo.TargetPGTblspc + "/", dir: filepath.Join(pgPath, repo.TargetPGTblspc)},
	}
}

// diskPath returns the path of manifest file name.
func (c *copier) diskPath(name string) (string, error) {
	for _, t := range c.targets {
		if rest, ok := strings.CutPrefix(name, t.prefix); ok {
			return filepath.Join(t.dir, filepath.FromSlash(rest)), nil
		}
	}
	return "", fmt.Errorf("manifest file '%s' is outside every target", name)
}

// worker is the reusable state of one copy goroutine: its read buffer and compressor.
type worker struct {
	buf []byte
	cw  compress.Writer // nil until the first file
}

func newWorker() *worker { return &worker{buf: make([]byte, copyBufferSize)} }

// copyResult is what storing one file produced.
type copyResult struct {
	size, repoSize   uint64
	sum, repoSum     string
	removed, matched bool // removed: gone from disk; matched: delta checksum equal
	// pageError and pageErrors are the page checksum result (files checked only).
	pageError  bool
	pageErrors string
}

// hashCounter hashes and counts what is written through it.
type hashCounter struct {
	w io.Writer
	h hash.Hash
	n uint64
}

func (h *hashCounter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += uint64(n)
	return n, err
}

// sumFile returns the SHA-1 and size of the first limit bytes of path.
func sumFile(ctx context.Context, path string, limit uint64, buf []byte) (string, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha1.New()
	n, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: io.LimitReader(f, int64(limit))}, buf)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(n), nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// copyFile stores the first size bytes of src as key: SHA-1, compress, encrypt, Put,
// streaming with bounded memory. A source that ends early is stored as read; one that is
// longer is cut at size (WAL replay repairs both for a data file).
func (c *copier) copyFile(ctx context.Context, src io.Reader, key string, size uint64, w *worker, also io.Writer) (copyResult, error) {
	pr, pw := io.Pipe()
	sum := sha1.New()
	var read uint64
	stored := &hashCounter{w: pw, h: sha1.New()}
	produced := make(chan error, 1)
	go func() {
		var in io.Writer = sum
		if also != nil {
			in = io.MultiWriter(sum, also)
		}
		err := c.produce(ctx, src, size, in, &read, stored, w)
		_ = pw.CloseWithError(err)
		produced <- err
	}()
	putErr := c.store.Put(ctx, key, pr)
	_ = pr.CloseWithError(errors.New("upload ended"))
	prodErr := <-produced
	if prodErr != nil {
		return copyResult{}, fmt.Errorf("read for %s: %w", key, prodErr)
	}
	if putErr != nil {
		return copyResult{}, fmt.Errorf("store %s: %w", key, putErr)
	}
	return copyResult{
		size: read, sum: hex.EncodeToString(sum.Sum(nil)),
		repoSize: stored.n, repoSum: hex.EncodeToString(stored.h.Sum(nil)),
	}, nil
}

// produce writes the compressed, encrypted content of f (up to size bytes) to out.
func (c *copier) produce(ctx context.Context, f io.Reader, size uint64, sum io.Writer, read *uint64, out io.Writer, w *worker) error {
	var enc io.WriteCloser
	dst := out
	if c.pass != "" {
		var err error
		if enc, err = cipher.NewEncrypter(out, []byte(c.pass)); err != nil {
			return err
		}
		dst = enc
	}
	if w.cw == nil {
		var err error
		if w.cw, err = compress.NewWriter(dst, c.codec, c.level); err != nil {
			return err
		}
	} else {
		w.cw.Reset(dst)
	}
	cw := w.cw
	n, err := io.CopyBuffer(io.MultiWriter(sum, cw), &ctxReader{ctx: ctx, r: io.LimitReader(f, int64(size))}, w.buf)
	*read = uint64(n)
	if err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if enc != nil {
		return enc.Close()
	}
	return nil
}

// copyAll stores every file of m that is not referenced (or whose delta check failed)
// with processMax workers and updates the entries with what was stored: without
// bundling one file at a time, largest first; with bundling (c.bundle) small files go
// into bundles in pgBackRest's order (see planJobs) and zero-length files are not
// stored. Files removed from disk meanwhile are dropped from the manifest.
func (c *copier) copyAll(ctx context.Context, m *repo.Manifest, verify map[string]bool, processMax int) error {
	if processMax < 1 {
		processMax = 1
	}
	var todo []int
	for i := range m.Files {
		f := &m.Files[i]
		if c.bundle && f.Size == 0 {
			// Not stored: restore creates it empty (pgBackRest's "store zero-length file").
			f.Reference, f.BundleID, f.BundleOffset, f.RepoSize, f.RepoChecksum = "", 0, 0, 0, ""
			continue
		}
		if f.Reference == "" || verify[f.Name] {
			todo = append(todo, i)
		}
	}
	var total uint64
	for _, i := range todo {
		total += m.Files[i].Size
	}
	jobs := c.planJobs(m, todo)
	var done atomic.Uint64
	report := func(n uint64) {
		if c.progress != nil {
			c.progress(done.Add(n), total)
		}
	}
	report(0)
	queue := make(chan copyJob)
	removed := make([]bool, len(m.Files))
	var mu sync.Mutex
	// apply records what storing file i produced (under mu).
	apply := func(i int, res copyResult, bundleID, offset uint64) {
		if res.removed {
			removed[i] = true
			return
		}
		if res.matched {
			return
		}
		g := &m.Files[i]
		g.Reference, g.BundleID, g.BundleOffset = "", bundleID, offset
		g.Size, g.Checksum, g.RepoSize, g.RepoChecksum = res.size, res.sum, res.repoSize, res.repoSum
		g.ChecksumPageError, g.ChecksumPageErrorList = res.pageError, res.pageErrors
		if c.pass == "" && c.codec == compress.None {
			g.RepoChecksum = ""
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(queue)
		for _, j := range jobs {
			select {
			case queue <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range processMax {
		g.Go(func() error {
			w := newWorker()
			for j := range queue {
				mu.Lock()
				files := make([]repo.ManifestFile, len(j.files))
				check := make([]bool, len(j.files))
				for k, i := range j.files {
					files[k] = m.Files[i]
					check[k] = verify[files[k].Name]
				}
				mu.Unlock()
				if j.bundleID == 0 {
					res, err := c.one(gctx, &files[0], check[0], w)
					if err != nil {
						return err
					}
					report(files[0].Size) // the size planned, so that done never passes total
					mu.Lock()
					apply(j.files[0], res, 0, 0)
					mu.Unlock()
					continue
				}
				results, err := c.storeBundle(gctx, j.bundleID, files, check, w)
				if err != nil {
					return err
				}
				mu.Lock()
				for k, i := range j.files {
					apply(i, results[k].copyResult, j.bundleID, results[k].offset)
				}
				mu.Unlock()
				for k := range files {
					report(files[k].Size)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("copy files: %w", err)
	}
	kept := m.Files[:0]
	for i, f := range m.Files {
		if !removed[i] {
			kept = append(kept, f)
		} else {
			c.log.Info("skip file removed by database", zap.String("file", f.Name))
		}
	}
	m.Files = kept
	return nil
}

// deltaCheck compares file f on disk with its prior checksum (delta): done
// reports a file that needs no copy, matched or removed from disk.
func (c *copier) deltaCheck(ctx context.Context, f *repo.ManifestFile, w *worker) (copyResult, bool, error) {
	path, err := c.diskPath(f.Name)
	if err != nil {
		return copyResult{}, false, err
	}
	sum, n, err := sumFile(ctx, path, f.Size, w.buf)
	switch {
	case os.IsNotExist(err):
		return copyResult{removed: true}, true, nil
	case err != nil:
		return copyResult{}, false, fmt.Errorf("read %s: %w", path, err)
	case n == f.Size && sum == f.Checksum:
		return copyResult{matched: true}, true, nil
	}
	return copyResult{}, false, nil
}

// warnPages logs the page checksum errors of a copied file.
func (c *copier) warnPages(name string, res copyResult) {
	if res.pageError {
		c.log.Warn("invalid page checksums found", zap.String("file", name), zap.String("pages", res.pageErrors),
			zap.Bool("misaligned", res.pageErrors == ""))
	}
}

// one stores one file on its own, after checking it against its prior checksum when
// asked to.
func (c *copier) one(ctx context.Context, f *repo.ManifestFile, check bool, w *worker) (copyResult, error) {
	if check {
		if res, done, err := c.deltaCheck(ctx, f, w); err != nil || done {
			return res, err
		}
	}
	path, err := c.diskPath(f.Name)
	if err != nil {
		return copyResult{}, err
	}
	file, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return copyResult{removed: true}, nil
		}
		return copyResult{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer file.Close()
	var pc *pageChecker
	var also io.Writer
	if f.ChecksumPage {
		pc = newPageChecker(file, f.Name[strings.LastIndexByte(f.Name, '/')+1:])
		also = pc
	}
	res, err := c.copyFile(ctx, file, c.prefix+f.Name+c.ext, f.Size, w, also)
	if err == nil && pc != nil {
		res.pageError, res.pageErrors = pc.result()
		c.warnPages(f.Name, res)
	}
	return res, err
}
