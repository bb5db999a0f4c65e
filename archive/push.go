package archive

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/pg"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// PushOptions configure a Pusher.
type PushOptions struct {
	// CompressType and CompressLevel compress segments (compress-type,
	// compress-level); the level must lie in CompressType.Levels().
	CompressType  compress.Type
	CompressLevel int
	// HeaderCheck checks each segment's long page header against Cluster
	// (archive-header-check).
	HeaderCheck bool
	// ModeCheck warns when a repository already holds a segment with the
	// same checksum (archive-mode-check), as pgBackRest does.
	ModeCheck bool
	// Cluster is the cluster segments must come from, as OpenPush returns it.
	Cluster Cluster
	// Log receives warnings and debug messages; nil logs nothing.
	Log *zap.Logger
	// ListWait bounds how long a push waits, once the file is read, for
	// the repositories' listings (is the segment already there?) before it
	// writes to the repositories that answered. A late repository is
	// checked when its listing comes, then written on its own, so that a
	// hung repository does not hold the others. Zero waits for every
	// listing: a duplicate anywhere then stops every write, as in
	// pgBackRest. With a bound, a duplicate found in a late repository is
	// still a *DuplicateError, but the others may have received the file.
	ListWait time.Duration
}

// PushResult describes one push.
type PushResult struct {
	// WAL is the file name and Kind its kind.
	WAL  string
	Kind Kind
	// SHA1 is the lowercase hex SHA-1 of the file and Size its length.
	SHA1 string
	Size int64
	// Stored is the size of what is stored before encryption: the
	// compressed segment, or the file itself.
	Stored int64
	// Written lists the repositories that received the file.
	Written []string
	// Existing lists the repositories that already held the segment with
	// the same checksum.
	Existing []string
	// Warnings are the warnings of the push, already logged.
	Warnings []string
}

// Pusher pushes WAL files to a fixed set of repositories. It is safe for
// concurrent use. Concurrent pushes of different files are independent.
type Pusher struct {
	targets []Target
	opts    PushOptions
	log     *zap.Logger
	usable  int
	// idle keeps a few workspaces (buffers and codecs) between pushes.
	idle chan *workspace
}

// Workspace sizing: the file is read in chunks that the hasher and the
// compressor share. A few idle workspaces are kept, and none whose output
// buffer grew beyond maxKeptBuffer (segments above 64 MiB are rare).
const (
	chunkSize     = 512 << 10
	chunkCount    = 4
	maxIdle       = 2
	maxKeptBuffer = 96 << 20
)

// NewPusher returns a Pusher for targets, which OpenPush prepared. It fails
// when the compression settings are invalid, or when no target is usable
// (a *PushError with code 103).
func NewPusher(targets []Target, opts PushOptions) (*Pusher, error) {
	p := &Pusher{targets: targets, opts: opts, log: opts.Log, idle: make(chan *workspace, maxIdle)}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	for i := range targets {
		if targets[i].Err == nil {
			p.usable++
		}
	}
	if p.usable == 0 {
		return nil, noneUsable("", targets)
	}
	if opts.HeaderCheck && (opts.Cluster.Version == "" || opts.Cluster.SystemID == 0) {
		return nil, errors.New("archive-push: the header check needs the cluster's version and system id")
	}
	ws, err := p.newWorkspace()
	if err != nil {
		return nil, err
	}
	p.putWorkspace(ws)
	return p, nil
}

// workspace is what one push needs in memory: the read chunks, the output
// buffer, the compressor and the hash.
type workspace struct {
	chunks [chunkCount][]byte
	out    bytes.Buffer
	cw     compress.Writer // compressor of the configured type
	plain  compress.Writer // pass-through for files stored as they are
	sha    hash.Hash
}

func (p *Pusher) newWorkspace() (*workspace, error) {
	ws := &workspace{sha: sha1.New()}
	var err error
	if ws.cw, err = compress.NewWriter(&ws.out, p.opts.CompressType, p.opts.CompressLevel); err != nil {
		return nil, fmt.Errorf("archive-push: %w", err)
	}
	if ws.plain, err = compress.NewWriter(&ws.out, compress.None, 0); err != nil {
		return nil, fmt.Errorf("archive-push: %w", err)
	}
	for i := range ws.chunks {
		ws.chunks[i] = make([]byte, chunkSize)
	}
	return ws, nil
}

func (p *Pusher) getWorkspace() (*workspace, error) {
	select {
	case ws := <-p.idle:
		return ws, nil
	default:
		return p.newWorkspace()
	}
}

func (p *Pusher) putWorkspace(ws *workspace) {
	if ws.out.Cap() > maxKeptBuffer {
		return
	}
	ws.out.Reset()
	select {
	case p.idle <- ws:
	default:
	}
}

// Push archives the file at walPath to every target. The file name must be
// a WAL file name (see ParseName). It is checked before anything is opened.
//
// The file is read once. For segments the long page header is checked
// first (with HeaderCheck). Each repository is listed for the segment while
// the file is hashed and compressed. A repository that holds it with the
// same SHA-1 succeeds without writing. If one holds different content, Push
// returns a *DuplicateError (code 45) and writes nowhere (with ListWait, a
// repository whose listing comes late is checked, and refused, on its own:
// see PushOptions.ListWait). The other
// repositories then receive the file concurrently, each encrypted with its
// own archive sub-passphrase. Timeline and backup history files are stored
// as they are (encrypted on encrypted repositories) and replace any earlier
// copy.
//
// Push returns nil only when every target holds the file durably. Otherwise
// it returns a *PushError naming each failed repository, after every other
// repository has received the file. The result describes what was done even
// then.
func (p *Pusher) Push(ctx context.Context, walPath string) (PushResult, error) {
	return p.PushRepos(ctx, walPath, nil, nil)
}

// Repos returns the names of the Pusher's repositories, in order.
func (p *Pusher) Repos() []string {
	out := make([]string, len(p.targets))
	for i := range p.targets {
		out[i] = p.targets[i].Name()
	}
	return out
}

// Unusable returns the names of the repositories that OpenPush could not
// prepare (their Target has Err set): every push fails for them.
func (p *Pusher) Unusable() []string {
	var out []string
	for i := range p.targets {
		if p.targets[i].Err != nil {
			out = append(out, p.targets[i].Name())
		}
	}
	return out
}

// PushRepos is Push restricted to the repositories named in repos (all of
// them when repos is nil; unknown names are ignored). The file is still read,
// hashed and compressed once, and only the selected repositories are listed
// and written. It returns nil when every selected repository holds the file.
//
// done, when not nil, is called once for each selected repository as soon
// as its own outcome is known: nil when it received the file or already
// held it, its error when it failed (a *PushError then also names it).
// Calls come from any goroutine, possibly concurrently, before PushRepos
// returns; a slow repository does not delay the report of a fast one. A
// repository not reported when PushRepos returns shares the returned error:
// the file could not be read, it is a duplicate (*DuplicateError), ctx was
// cancelled.
func (p *Pusher) PushRepos(ctx context.Context, walPath string, repos []string, done func(repo string, err error)) (PushResult, error) {
	name := filepath.Base(walPath)
	kind, err := ParseName(name)
	if err != nil {
		return PushResult{}, fmt.Errorf("archive-push %s: %w", walPath, err)
	}
	res := PushResult{WAL: name, Kind: kind}
	f, err := os.Open(walPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return res, withCode(CodeFileMissing, fmt.Errorf("unable to open missing file '%s' for read: %w", walPath, err))
		}
		return res, withCode(CodeFileOpen, fmt.Errorf("unable to open file '%s' for read: %w", walPath, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, withCode(CodeFileOpen, fmt.Errorf("stat %s: %w", walPath, err))
	}

	ws, err := p.getWorkspace()
	if err != nil {
		return res, err
	}
	defer p.putWorkspace(ws)
	first, err := readChunk(f, ws.chunks[0])
	if err != nil {
		return res, withCode(CodeFileRead, fmt.Errorf("read %s: %w", walPath, err))
	}
	if kind.IsSegment() && p.opts.HeaderCheck {
		if err := p.checkHeader(walPath, first, fi.Size(), kind); err != nil {
			return res, err
		}
	}

	// List the repositories while the file is hashed and compressed.
	states := make([]repoState, len(p.targets))
	selectRepos(p.targets, states, repos)
	report := func(i int) {
		if done != nil {
			done(p.targets[i].Name(), states[i].err)
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var listing sync.WaitGroup
	listed := make([]chan struct{}, len(p.targets)) // closed when a listing ends
	for i := range p.targets {
		t := &p.targets[i]
		st := &states[i]
		if st.off {
			continue
		}
		if st.err = t.Err; st.err != nil {
			report(i)
			continue
		}
		if !kind.IsSegment() {
			continue
		}
		ch := make(chan struct{})
		listed[i] = ch
		listing.Go(func() {
			defer close(ch)
			st.found, st.err = listSegment(lctx, t, name)
		})
	}
	w := ws.plain
	if kind.IsSegment() {
		w = ws.cw
	}
	ws.out.Grow(int(fi.Size() + fi.Size()/64 + 64<<10))
	res.SHA1, res.Size, err = ws.digest(f, first, w)
	if err != nil {
		cancel()
		listing.Wait()
		return res, withCode(CodeFileRead, fmt.Errorf("read and compress %s: %w", walPath, err))
	}
	late := p.awaitListings(listed)
	data := ws.out.Bytes()
	res.Stored = int64(len(data))

	stored := name
	if kind.IsSegment() {
		stored = name + "-" + res.SHA1 + p.opts.CompressType.Ext()
		for i := range states {
			if !late[i] {
				if err := p.decide(&res, i, &states[i]); err != nil {
					cancel()
					listing.Wait()
					return res, err
				}
			}
		}
	}

	var uploads sync.WaitGroup
	var mu sync.Mutex // guards res and lateErr for the late repositories
	var lateErr error
	for i := range p.targets {
		t := &p.targets[i]
		st := &states[i]
		if st.off || t.Err != nil {
			continue
		}
		if late[i] {
			// Checked when its listing comes, then written on its own.
			key := t.Repo.ArchiveKey(repo.ArchivePath(t.ArchiveID, stored))
			uploads.Go(func() {
				<-listed[i]
				mu.Lock()
				err := p.decide(&res, i, st)
				if err != nil {
					lateErr = err
				}
				mu.Unlock()
				switch {
				case err != nil:
					return // the whole push fails with it
				case st.err != nil || st.skip:
				default:
					st.err = upload(ctx, t, key, data)
				}
				if ctx.Err() == nil {
					report(i)
				}
			})
			continue
		}
		if st.err != nil || st.skip {
			report(i) // a listing failure, or already archived
			continue
		}
		key := t.Repo.ArchiveKey(repo.ArchivePath(t.ArchiveID, stored))
		uploads.Go(func() {
			st.err = upload(ctx, t, key, data)
			if ctx.Err() == nil {
				report(i)
			}
		})
	}
	uploads.Wait()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("archive-push %s: %w", name, err)
	}
	if lateErr != nil {
		return res, lateErr
	}

	var failed []RepoError
	for i := range p.targets {
		st := &states[i]
		switch {
		case st.off:
		case st.err != nil:
			failed = append(failed, RepoError{Repo: p.targets[i].Name(), Err: st.err})
		case !st.skip:
			res.Written = append(res.Written, p.targets[i].Name())
			p.log.Debug("pushed WAL file", zap.String("wal", name), zap.String("repo", p.targets[i].Name()),
				zap.String("archive-id", p.targets[i].ArchiveID))
		}
	}
	if len(failed) > 0 {
		return res, &PushError{WAL: name, Repos: failed}
	}
	return res, nil
}

// repoState is the progress of one push in one repository.
type repoState struct {
	off   bool     // the repository is not selected for this push
	found []string // repository names of the segment found by listSegment
	skip  bool     // the repository already holds the segment
	err   error
}

// awaitListings waits for the listings that listed tracks (nil entries are
// not listed). It returns which ones are late: still running ListWait after
// the file was read. Without ListWait it waits for all, and none is late.
func (p *Pusher) awaitListings(listed []chan struct{}) []bool {
	late := make([]bool, len(listed))
	var deadline <-chan time.Time
	if p.opts.ListWait > 0 {
		t := time.NewTimer(p.opts.ListWait)
		defer t.Stop()
		deadline = t.C
	}
	expired := false
	for i, ch := range listed {
		if ch == nil {
			continue
		}
		if expired {
			select {
			case <-ch:
			default:
				late[i] = true
			}
			continue
		}
		select {
		case <-ch:
		case <-deadline:
			expired = true
			select {
			case <-ch:
			default:
				late[i] = true
			}
		}
	}
	return late
}

// decide compares what repository i holds, once listed, with the pushed
// segment. It marks the repository when it already holds the segment. A
// different checksum is a *DuplicateError, returned before anything is
// written to a repository listed in time. Several copies in one repository
// are an error of that repository, as in pgBackRest's walSegmentFind.
func (p *Pusher) decide(res *PushResult, i int, st *repoState) error {
	t := &p.targets[i]
	switch {
	case st.off || st.err != nil || len(st.found) == 0:
	case len(st.found) > 1:
		st.err = withCode(CodeArchiveDup, fmt.Errorf("duplicates found in archive for WAL segment %s: %v\nHINT: are multiple primaries archiving to this stanza?",
			res.WAL, st.found))
	default:
		wf, err := repo.ParseWALRepoFileName(st.found[0])
		if err != nil {
			st.err = err // listSegment only returns names that parse
			return nil
		}
		if wf.SHA1 != res.SHA1 {
			return &DuplicateError{WAL: res.WAL, Repo: t.Name(), Archived: wf.SHA1, Pushed: res.SHA1}
		}
		st.skip = true
		res.Existing = append(res.Existing, t.Name())
		if p.opts.ModeCheck {
			msg := fmt.Sprintf("WAL file '%s' already exists in the %s archive with the same checksum\n"+
				"HINT: this is valid in some recovery scenarios but may also indicate a problem.", res.WAL, t.Name())
			res.Warnings = append(res.Warnings, msg)
			p.log.Warn(msg)
		}
	}
	return nil
}

// selectRepos marks the targets that are not named in repos as off; a nil
// repos selects every target.
func selectRepos(targets []Target, states []repoState, repos []string) {
	if repos == nil {
		return
	}
	for i := range targets {
		states[i].off = !slices.Contains(repos, targets[i].Name())
	}
}

// checkHeader checks a segment's long page header against the stanza, as
// pgBackRest's archive-header-check does. It also requires a valid segment
// size, and a full segment to be that size.
func (p *Pusher) checkHeader(walPath string, b []byte, size int64, kind Kind) error {
	h, err := pg.ParseWALHeader(b, walPath)
	if err != nil {
		return withCode(CodeFormat, err)
	}
	want := p.opts.Cluster
	if h.Version != want.Version || h.SystemID != want.SystemID {
		return mismatchf("WAL file '%s' version %s, system-id %d do not match stanza version %s, system-id %d",
			walPath, h.Version, h.SystemID, want.Version, want.SystemID)
	}
	if s := h.SegmentSize; s < 1<<20 || s > 1<<30 || s&(s-1) != 0 {
		return withCode(CodeFormat, fmt.Errorf("WAL file '%s': invalid WAL segment size %d in its header", walPath, s))
	}
	if kind == Segment && size != int64(h.SegmentSize) {
		return withCode(CodeFormat, fmt.Errorf("WAL file '%s' is %d bytes but its header gives a segment size of %d", walPath, size, h.SegmentSize))
	}
	return nil
}

// listSegment returns the repository names of segment wal (a segment or a
// partial segment name) in t's current archive id.
func listSegment(ctx context.Context, t *Target, wal string) ([]string, error) {
	prefix := t.Repo.ArchiveKey(repo.ArchivePath(t.ArchiveID, wal+"-"))
	dir := path.Dir(prefix)
	var found []string
	err := t.Repo.Store().List(ctx, prefix, func(oi storage.ObjectInfo) error {
		name := path.Base(oi.Key)
		if path.Dir(oi.Key) != dir {
			return nil
		}
		if wf, err := repo.ParseWALRepoFileName(name); err == nil && wf.WALName() == wal {
			found = append(found, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return found, nil
}

// upload stores data under key in t, encrypted when t is.
func upload(ctx context.Context, t *Target, key string, data []byte) error {
	var r io.Reader = bytes.NewReader(data)
	if t.Pass != "" {
		er, err := newEncryptReader(data, t.Pass)
		if err != nil {
			return err
		}
		r = er
	}
	if err := t.Repo.Store().Put(ctx, key, r); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// readChunk reads up to len(buf) bytes; a short file is not an error.
func readChunk(r io.Reader, buf []byte) ([]byte, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return buf[:n], err
}

// digest feeds the rest of r, after first (read into ws.chunks[0]), to the
// SHA-1 and to w, which writes to ws.out. The hash runs on its own goroutine
// over the same chunks, so hashing and compressing proceed in parallel. It
// returns the hex SHA-1 and the number of bytes read, after closing w.
func (ws *workspace) digest(r io.Reader, first []byte, w compress.Writer) (string, int64, error) {
	w.Reset(&ws.out)
	ws.sha.Reset()
	toHash := make(chan []byte, chunkCount)
	free := make(chan []byte, chunkCount)
	for _, c := range ws.chunks[1:] {
		free <- c
	}
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for c := range toHash {
			ws.sha.Write(c)
			free <- c[:cap(c)]
		}
	}()
	size, err := ws.feed(r, first, w, toHash, free)
	close(toHash)
	<-hashed
	if err != nil {
		return "", size, err
	}
	if err := w.Close(); err != nil {
		return "", size, err
	}
	return hex.EncodeToString(ws.sha.Sum(nil)), size, nil
}

// feed is digest's reading loop: each chunk goes to the hasher and to w, and
// the next is read into a chunk the hasher has finished with.
func (ws *workspace) feed(r io.Reader, cur []byte, w compress.Writer, toHash chan<- []byte, free <-chan []byte) (int64, error) {
	var size int64
	for len(cur) > 0 {
		size += int64(len(cur))
		toHash <- cur
		if _, err := w.Write(cur); err != nil {
			return size, err
		}
		if len(cur) < chunkSize {
			return size, nil // a short read means the end of the file
		}
		var err error
		if cur, err = readChunk(r, <-free); err != nil {
			return size, err
		}
	}
	return size, nil
}
