package backup

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/repo"
)

// Bundling (repo-bundle=y), as pgBackRest 2.45 writes it:
//
//   - Files of at most repo-bundle-limit bytes are stored together in objects
//     backup/<stanza>/<label>/bundle/<id>; larger files are stored on their own
//     as without bundling. Ids count from 1 in the order the bundles are
//     planned; an id whose files all turned out unchanged or removed has no
//     object (pgBackRest skips the id as well).
//   - Each file in a bundle is compressed and encrypted on its own, with its
//     own compression frame and its own "Salted__" header (backup-bundle-raw
//     is false: pgBackRest makes it true only with block incremental), and
//     appended; the manifest records its bundle id ("bni"), its offset in the
//     bundle ("bno", omitted when 0), its stored size ("repo-size") and the
//     SHA-1 of its stored bytes ("rck").
//   - Zero-length files are not stored at all: they carry no bundle id, no
//     reference and no repository checksum (manifestBuildInfo() sets copy=false
//     for them), and readers create them empty.
//   - Files are planned per target (pg_data, then each tablespace) in
//     backupProcessQueue()'s order: files over the limit first, largest first;
//     then the bundled ones oldest first (by modification time), names
//     descending within a second, so that files that change together are
//     bundled together. backupJobCallback() fills a bundle greedily in that
//     order: a file that would bring the bundle's original size to
//     repo-bundle-size or more is left for a later bundle, and a smaller file
//     after it may still go in.
//   - A diff or incr references unchanged files of its prior backup with the
//     prior's bundle id and offset (the data stays in the prior's bundle).

const (
	// DefaultBundleSize and DefaultBundleLimit are repo-bundle-size and
	// repo-bundle-limit's defaults.
	DefaultBundleSize  = 20 << 20
	DefaultBundleLimit = 2 << 20
)

// copyJob is one unit of the copy: one file stored on its own (bundleID 0)
// or the files of one bundle, as indexes into the manifest's files.
type copyJob struct {
	bundleID uint64
	files    []int
}

// planJobs turns the files to copy (indexes into m.Files) into jobs: one per
// file, largest first, without bundling; bundles and large files in
// pgBackRest's order with it.
func (c *copier) planJobs(m *repo.Manifest, todo []int) []copyJob {
	if !c.bundle {
		slices.SortStableFunc(todo, func(a, b int) int {
			sa, sb := m.Files[a].Size, m.Files[b].Size
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return strings.Compare(m.Files[a].Name, m.Files[b].Name)
		})
		jobs := make([]copyJob, len(todo))
		for k, i := range todo {
			jobs[k] = copyJob{files: []int{i}}
		}
		return jobs
	}
	// One queue per target: pg_data/ first, then pg_tblspc/<oid>/ in name order.
	queues := map[string][]int{}
	for _, i := range todo {
		q := queueOf(m.Files[i].Name)
		queues[q] = append(queues[q], i)
	}
	names := make([]string, 0, len(queues))
	for q := range queues {
		if q != repo.TargetPGData+"/" {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	if _, ok := queues[repo.TargetPGData+"/"]; ok {
		names = slices.Insert(names, 0, repo.TargetPGData+"/")
	}
	var jobs []copyJob
	nextID := uint64(1)
	for _, q := range names {
		queue := queues[q]
		slices.SortFunc(queue, func(a, b int) int { return -c.queueCompare(&m.Files[a], &m.Files[b]) })
		rest := make([]int, 0, len(queue))
		for len(queue) > 0 {
			if m.Files[queue[0]].Size > c.bundleLimit {
				jobs = append(jobs, copyJob{files: []int{queue[0]}})
				queue = queue[1:]
				continue
			}
			var picked []int
			var size uint64
			rest = rest[:0]
			for _, i := range queue {
				s := m.Files[i].Size
				if size >= c.bundleSize || (len(picked) > 0 && size+s >= c.bundleSize) {
					rest = append(rest, i)
					continue
				}
				picked = append(picked, i)
				size += s
			}
			jobs = append(jobs, copyJob{bundleID: nextID, files: picked})
			nextID++
			queue, rest = rest, queue[:0]
		}
	}
	return jobs
}

// queueOf returns the target prefix whose queue holds manifest file name:
// "pg_tblspc/<oid>/" for a tablespace file, else "pg_data/".
func queueOf(name string) string {
	if rest, ok := strings.CutPrefix(name, repo.TargetPGTblspc+"/"); ok {
		if oid, _, ok := strings.Cut(rest, "/"); ok {
			return repo.TargetPGTblspc + "/" + oid + "/"
		}
	}
	return repo.TargetPGData + "/"
}

// queueCompare is backupProcessQueueComparator(): by size when either file
// is over the bundle limit, then (bundling) newer first, then by name. The
// queue is sorted in descending order of it.
func (c *copier) queueCompare(a, b *repo.ManifestFile) int {
	if a.Size > c.bundleLimit || b.Size > c.bundleLimit {
		switch {
		case a.Size < b.Size:
			return -1
		case a.Size > b.Size:
			return 1
		}
	}
	switch {
	case a.Timestamp > b.Timestamp:
		return -1
	case a.Timestamp < b.Timestamp:
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// bundleResult is what storing one file of a bundle produced.
type bundleResult struct {
	copyResult
	offset uint64 // where the file's stored bytes start in the bundle
}

// errBundleEnded closes the read side of a bundle's pipe once Put returned.
var errBundleEnded = errors.New("bundle upload ended")

// storeBundle stores the files of one bundle as backup/<stanza>/<label>/bundle/<id>,
// as pgBackRest's backupFile() does with a bundle id: first the delta checks
// of the files in check (a matching file keeps its reference, a vanished one
// is dropped), then every remaining file is read, compressed and encrypted on
// its own and appended to one Put fed through a pipe, so that memory stays
// bounded whatever the bundle's size. The Put starts with the first file
// written: when nothing is left to write, no object is created. A file that
// vanishes before it is opened is dropped; any other failure fails the
// bundle, and Put's atomicity leaves no partial object.
func (c *copier) storeBundle(ctx context.Context, id uint64, files []repo.ManifestFile, check []bool, w *worker) ([]bundleResult, error) {
	key := c.bundleKey(id)
	results := make([]bundleResult, len(files))
	for i := range files {
		if !check[i] {
			continue
		}
		res, done, err := c.deltaCheck(ctx, &files[i], w)
		if err != nil {
			return nil, err
		}
		if done {
			results[i].copyResult = res
		}
	}
	var (
		pw      *io.PipeWriter
		putDone chan error
		offset  uint64
	)
	// fail ends the upload with err and returns the error to report: the
	// upload's own error when it failed first.
	fail := func(err error) error {
		if pw == nil {
			return err
		}
		_ = pw.CloseWithError(err)
		if putErr := <-putDone; putErr != nil && !errors.Is(putErr, err) {
			return fmt.Errorf("store %s: %w", key, putErr)
		}
		return err
	}
	for i := range files {
		f := &files[i]
		if results[i].removed || results[i].matched {
			continue
		}
		path, err := c.diskPath(f.Name)
		if err != nil {
			return nil, fail(err)
		}
		file, err := os.Open(path)
		if err != nil {
			if os.IsNotExist(err) {
				results[i].removed = true
				continue
			}
			return nil, fail(fmt.Errorf("open %s: %w", path, err))
		}
		if pw == nil {
			var pr *io.PipeReader
			pr, pw = io.Pipe()
			putDone = make(chan error, 1)
			go func() {
				err := c.store.Put(ctx, key, pr)
				_ = pr.CloseWithError(errBundleEnded)
				putDone <- err
			}()
		}
		res, err := c.appendFile(ctx, file, f, pw, w)
		_ = file.Close()
		if err != nil {
			return nil, fail(fmt.Errorf("bundle %d: %s: %w", id, f.Name, err))
		}
		results[i] = bundleResult{copyResult: res, offset: offset}
		offset += res.repoSize
		c.log.Debug("backup file", zap.String("file", f.Name), zap.Uint64("bundle", id), zap.Uint64("offset", results[i].offset),
			zap.Uint64("size", res.size))
	}
	if pw == nil {
		return results, nil
	}
	_ = pw.Close()
	if err := <-putDone; err != nil {
		return nil, fmt.Errorf("store %s: %w", key, err)
	}
	return results, nil
}

// appendFile writes the first f.Size bytes of file, compressed and encrypted
// as a stream of its own, to out, and returns the sizes and checksums of what
// was read and written, with the page checksum result when f asks for it.
func (c *copier) appendFile(ctx context.Context, file *os.File, f *repo.ManifestFile, out io.Writer, w *worker) (copyResult, error) {
	sum := sha1.New()
	var in io.Writer = sum
	var pc *pageChecker
	if f.ChecksumPage {
		pc = newPageChecker(file, f.Name[strings.LastIndexByte(f.Name, '/')+1:])
		in = io.MultiWriter(sum, pc)
	}
	stored := &hashCounter{w: out, h: sha1.New()}
	var read uint64
	if err := c.produce(ctx, file, f.Size, in, &read, stored, w); err != nil {
		return copyResult{}, err
	}
	res := copyResult{
		size: read, sum: hex.EncodeToString(sum.Sum(nil)),
		repoSize: stored.n, repoSum: hex.EncodeToString(stored.h.Sum(nil)),
	}
	if pc != nil {
		res.pageError, res.pageErrors = pc.result()
		c.warnPages(f.Name, res)
	}
	return res, nil
}
