package archive

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// PrefetchConfig configures a Prefetcher.
type PrefetchConfig struct {
	// Dir is the prefetch area, a directory that belongs to the Prefetcher
	// (pgBackRest's <spool-path>/archive/<stanza>/in). NewPrefetcher
	// creates it and empties it, and Run empties it when it ends: a file
	// left by an earlier run may belong to another recovery.
	Dir string
	// QueueMax is archive-get-queue-max: the segments in Dir plus those
	// being fetched never take more bytes. Below the size of one segment
	// nothing is prefetched. (pgBackRest keeps at least two segments.)
	QueueMax int64
	// Workers is how many segments are fetched at once (process-max).
	Workers int
	// MissingRetry is how long a segment that the prefetch found missing
	// (the end of the archive) or could not get is not looked for again by
	// the prefetch. A request from PostgreSQL always looks again. Default
	// 2 s.
	MissingRetry time.Duration
	// SourcesMaxAge is how long one result of Sources is used for fetches
	// before Sources is called again (archive.info is read again).
	// Default 1 minute.
	SourcesMaxAge time.Duration
	// Sources opens the repositories to fetch from (OpenGet). The
	// Prefetcher calls release once no fetch uses them any more.
	Sources func(ctx context.Context) (sources []Source, release func(), err error)
	// Log receives the prefetch's messages; nil discards them.
	Log *zap.Logger
}

// Prefetcher is pgBackRest's asynchronous archive-get, in process: when
// PostgreSQL's restore_command asks for segment N, the segments that follow
// N on its timeline are fetched in the background, Workers at a time, into
// Dir (each one verified and written atomically by Get), so that the next
// requests are answered from local disk. The queue holds the segments
// after the last request, at most QueueMax bytes; the prefetch stops at
// the first segment that is not in the archive and looks for it again at
// the next request once MissingRetry has passed. Files that the last
// request left behind (older segments, another timeline) are removed.
//
// Only whole segments are prefetched; timeline history files, partial
// segments and backup history files are always read from the
// repositories. The segment size is learned from the first segment
// restored.
//
// Get is safe for concurrent use; Run runs the fetches and must run for
// anything to be prefetched.
type Prefetcher struct {
	cfg  PrefetchConfig
	log  *zap.Logger
	kick chan struct{}

	mu          sync.Mutex
	files       map[string]*prefetched
	bytes       int64  // bytes of the ready files in Dir
	last        string // the last segment requested
	lastMissing bool   // the last request found its segment nowhere
	segSize     int64  // learned from a restored segment; 0 until then
	set         *sourceSet
	closed      bool
	cancels     map[*prefetched]context.CancelFunc
}

// prefetchState is the state of one segment in the prefetch area.
type prefetchState int

const (
	stateFetching prefetchState = iota
	stateReady                  // verified and in Dir
	stateMissing                // in no repository, at the time
	stateFailed                 // the repositories could not give it
)

// prefetched is one segment of the prefetch area.
type prefetched struct {
	state prefetchState
	done  chan struct{} // closed when the fetch ends
	res   GetResult     // where it came from, when ready
	at    time.Time     // when it was found missing or failed
	drop  bool          // out of the window: removed when its fetch ends
}

// sourceSet is one result of PrefetchConfig.Sources and its users.
type sourceSet struct {
	list    []Source
	release func()
	at      time.Time
	users   int
	stale   bool
}

// Prefetch defaults.
const (
	defaultMissingRetry  = 2 * time.Second
	defaultSourcesMaxAge = time.Minute
	// minSegmentSize and maxSegmentSize bound the WAL segment sizes
	// PostgreSQL allows (initdb --wal-segsize, a power of two).
	minSegmentSize = 1 << 20
	maxSegmentSize = 1 << 30
)

// NewPrefetcher creates the prefetch area and empties it.
func NewPrefetcher(cfg PrefetchConfig) (*Prefetcher, error) {
	if cfg.Dir == "" || cfg.Sources == nil {
		return nil, errors.New("prefetch: Dir and Sources are required")
	}
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.MissingRetry <= 0 {
		cfg.MissingRetry = defaultMissingRetry
	}
	if cfg.SourcesMaxAge <= 0 {
		cfg.SourcesMaxAge = defaultSourcesMaxAge
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the archive-get prefetch directory: %w", err)
	}
	p := &Prefetcher{cfg: cfg, log: log, kick: make(chan struct{}, 1), files: map[string]*prefetched{},
		cancels: map[*prefetched]context.CancelFunc{}}
	if err := p.clear(); err != nil {
		return nil, err
	}
	return p, nil
}

// Dir returns the prefetch area.
func (p *Prefetcher) Dir() string { return p.cfg.Dir }

// Bytes returns the bytes of the prefetched segments waiting in Dir.
func (p *Prefetcher) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Refresh makes the next fetches open the sources again (after a
// configuration reload); the current ones are released once their fetches
// end.
func (p *Prefetcher) Refresh() {
	p.mu.Lock()
	release := p.dropSetLocked()
	p.mu.Unlock()
	if release != nil {
		release()
	}
}

// clear removes the files of the prefetch area.
func (p *Prefetcher) clear() error {
	entries, err := os.ReadDir(p.cfg.Dir)
	if err != nil {
		return fmt.Errorf("list the archive-get prefetch directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(p.cfg.Dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("empty the archive-get prefetch directory: %w", err)
	}
	return nil
}

// Get restores walName to dest. A segment waiting in the prefetch area is
// moved there (renamed, or copied and checked against its SHA-1 when Dir
// is on another file system; then dest's directory is synced); one being
// fetched is waited for. Otherwise direct gets it from the repositories,
// as archive-get does; its outcome is returned as it is. A request for a
// segment moves the prefetch window to the segments that follow it.
// res.Prefetched tells whether the prefetch area served the file.
func (p *Prefetcher) Get(ctx context.Context, walName, dest string, direct func(context.Context) (GetResult, error)) (GetResult, error) {
	kind, err := ParseName(walName)
	if err != nil {
		return GetResult{}, fmt.Errorf("archive-get %s: %w", walName, err)
	}
	if kind != Segment {
		return direct(ctx)
	}
	p.request(walName)
	defer p.wake()
	for {
		p.mu.Lock()
		f := p.files[walName]
		if f != nil && f.state == stateFetching {
			done := f.done
			p.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return GetResult{}, fmt.Errorf("archive-get %s: %w", walName, ctx.Err())
			}
		}
		if f == nil || f.state != stateReady {
			p.mu.Unlock()
			break
		}
		delete(p.files, walName)
		p.bytes -= f.res.Size
		p.mu.Unlock()
		src := filepath.Join(p.cfg.Dir, walName)
		if err := moveInto(src, dest, f.res.SHA1); err != nil {
			_ = os.Remove(src)
			p.log.Warn("prefetched WAL segment not usable: getting it from the repositories again",
				zap.String("wal", walName), zap.Error(err))
			break
		}
		res := f.res
		res.Prefetched = true
		return res, nil
	}
	res, err := direct(ctx)
	p.mu.Lock()
	if p.last == walName {
		p.lastMissing = errors.Is(err, ErrNotFound)
	}
	if err == nil && p.segSize == 0 && validSegmentSize(res.Size) {
		p.segSize = res.Size
	}
	p.mu.Unlock()
	return res, err
}

// validSegmentSize reports whether n is a WAL segment size PostgreSQL allows.
func validSegmentSize(n int64) bool {
	return n >= minSegmentSize && n <= maxSegmentSize && n&(n-1) == 0
}

// request moves the window to the segments that follow walName and drops
// what is outside it.
func (p *Prefetcher) request(walName string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.lastMissing = walName, false
	for name, f := range p.files {
		if p.keepLocked(name) {
			continue
		}
		switch f.state {
		case stateFetching:
			f.drop = true
			if cancel := p.cancels[f]; cancel != nil {
				cancel()
			}
		case stateReady:
			p.bytes -= f.res.Size
			if err := os.Remove(filepath.Join(p.cfg.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				p.log.Warn("remove a prefetched WAL segment", zap.String("wal", name), zap.Error(err))
			}
			delete(p.files, name)
		default:
			delete(p.files, name)
		}
	}
}

// keepLocked reports whether segment name is the last request or in the
// window after it. p.mu is held.
func (p *Prefetcher) keepLocked(name string) bool {
	if name == p.last {
		return true
	}
	if p.segSize == 0 {
		return false
	}
	tli, no, ok := segmentNumber(name, p.segSize)
	ltli, lno, lok := segmentNumber(p.last, p.segSize)
	return ok && lok && tli == ltli && no > lno && no-lno <= uint64(p.cfg.QueueMax/p.segSize)
}

// wake asks Run for a scheduling round.
func (p *Prefetcher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run fetches the segments of the window until ctx is done. Then it
// cancels the fetches in flight, waits for them, releases the sources and
// empties the prefetch area; Get then always reads the repositories. It
// returns nil.
func (p *Prefetcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		p.mu.Lock()
		p.closed = true
		for _, cancel := range p.cancels {
			cancel()
		}
		p.mu.Unlock()
		wg.Wait()
		p.mu.Lock()
		release := p.dropSetLocked()
		clear(p.files)
		p.bytes = 0
		p.mu.Unlock()
		if release != nil {
			release()
		}
		if err := p.clear(); err != nil {
			p.log.Warn("prefetch area not emptied", zap.Error(err))
		}
	}()
	for {
		p.round(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		}
	}
}

// round starts the fetches the window needs.
func (p *Prefetcher) round(ctx context.Context, wg *sync.WaitGroup) {
	p.mu.Lock()
	n := len(p.planLocked(time.Now()))
	p.mu.Unlock()
	if n == 0 {
		return
	}
	set, err := p.sources(ctx)
	if err != nil {
		p.log.Warn("archive-get prefetch: repositories not usable", zap.Error(err))
		return
	}
	p.mu.Lock()
	if !p.closed {
		for _, name := range p.planLocked(time.Now()) {
			f := &prefetched{state: stateFetching, done: make(chan struct{})}
			p.files[name] = f
			fctx, cancel := context.WithCancel(ctx)
			p.cancels[f] = cancel
			set.users++
			wg.Go(func() { p.fetch(fctx, name, f, set) })
		}
	}
	release := p.unuseLocked(set)
	p.mu.Unlock()
	if release != nil {
		release()
	}
}

// unuseLocked removes a user from set and returns its release function
// when it was the last user of stale sources (the caller calls it without
// p.mu). p.mu is held.
func (p *Prefetcher) unuseLocked(set *sourceSet) func() {
	set.users--
	if set.stale && set.users == 0 {
		return set.release
	}
	return nil
}

// planLocked lists the segments to fetch now: those of the window that are
// not there nor being fetched, in order, up to the first one missing,
// while fewer than Workers fetches run and the queue has room. p.mu is held.
func (p *Prefetcher) planLocked(now time.Time) []string {
	if p.closed || p.last == "" || p.lastMissing || p.segSize == 0 {
		return nil
	}
	tli, no, ok := segmentNumber(p.last, p.segSize)
	if !ok {
		return nil
	}
	fetching := 0
	for _, f := range p.files {
		if f.state == stateFetching {
			fetching++
		}
	}
	reserved := p.bytes + int64(fetching)*p.segSize
	count := p.cfg.QueueMax / p.segSize
	var out []string
	for i := int64(1); i <= count; i++ {
		name := segmentName(tli, no+uint64(i), p.segSize)
		if f := p.files[name]; f != nil {
			if f.state == stateReady || f.state == stateFetching {
				continue
			}
			if now.Sub(f.at) < p.cfg.MissingRetry {
				break // the end of the archive (or a failure) for now
			}
			delete(p.files, name)
		}
		if fetching+len(out) >= p.cfg.Workers || reserved+int64(len(out)+1)*p.segSize > p.cfg.QueueMax {
			break
		}
		out = append(out, name)
	}
	return out
}

// sources returns the current sources with a user added (the caller
// removes it with unuseLocked), opening them again when they are too old.
func (p *Prefetcher) sources(ctx context.Context) (*sourceSet, error) {
	p.mu.Lock()
	if s := p.set; s != nil && time.Since(s.at) < p.cfg.SourcesMaxAge {
		s.users++
		p.mu.Unlock()
		return s, nil
	}
	old := p.dropSetLocked()
	p.mu.Unlock()
	if old != nil {
		old()
	}
	list, release, err := p.cfg.Sources(ctx)
	if err != nil {
		return nil, err
	}
	s := &sourceSet{list: list, release: release, at: time.Now(), users: 1}
	p.mu.Lock()
	p.set = s
	p.mu.Unlock()
	return s, nil
}

// dropSetLocked makes the current sources stale and returns their release
// function when no fetch uses them (the caller calls it without p.mu).
// p.mu is held.
func (p *Prefetcher) dropSetLocked() func() {
	s := p.set
	p.set = nil
	if s == nil {
		return nil
	}
	s.stale = true
	if s.users == 0 {
		return s.release
	}
	return nil
}

// fetch gets one segment of the window into the prefetch area.
func (p *Prefetcher) fetch(ctx context.Context, name string, f *prefetched, set *sourceSet) {
	start := time.Now()
	res, err := Get(ctx, set.list, name, filepath.Join(p.cfg.Dir, name), p.log)
	p.mu.Lock()
	if cancel := p.cancels[f]; cancel != nil {
		cancel()
		delete(p.cancels, f)
	}
	release := p.unuseLocked(set)
	switch {
	case f.drop || p.closed:
		if err == nil {
			_ = os.Remove(filepath.Join(p.cfg.Dir, name))
		}
		delete(p.files, name)
	case err == nil:
		f.state, f.res = stateReady, res
		p.bytes += res.Size
		p.log.Debug("prefetched WAL segment", zap.String("wal", name), zap.String("repo", res.Repo),
			zap.Duration("elapsed", time.Since(start)))
	case errors.Is(err, ErrNotFound):
		f.state, f.at = stateMissing, time.Now()
		p.log.Debug("prefetch reached the end of the archive", zap.String("wal", name))
	default:
		f.state, f.at = stateFailed, time.Now()
		if ctx.Err() == nil {
			p.log.Warn("archive-get prefetch failed", zap.String("wal", name), zap.Error(err))
		}
	}
	close(f.done)
	p.mu.Unlock()
	if release != nil {
		release()
	}
	p.wake()
}

// segmentNumber parses a segment name into its timeline and its segment
// number for segments of segSize bytes (PostgreSQL 9.3 and later).
func segmentNumber(name string, segSize int64) (uint32, uint64, bool) {
	if len(name) != segmentNameSize || !isHex(name) {
		return 0, 0, false
	}
	tli, err1 := strconv.ParseUint(name[0:8], 16, 32)
	log, err2 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err3 := strconv.ParseUint(name[16:24], 16, 32)
	perLog := uint64(0x100000000 / segSize)
	if err1 != nil || err2 != nil || err3 != nil || seg >= perLog {
		return 0, 0, false
	}
	return uint32(tli), log*perLog + seg, true
}

// segmentName is the name of segment number no of timeline tli.
func segmentName(tli uint32, no uint64, segSize int64) string {
	perLog := uint64(0x100000000 / segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, no/perLog, no%perLog)
}

// moveInto moves the verified file src to dest atomically and durably: a
// rename, or, across file systems, a copy to a temporary file beside dest
// (checked against sum, the SHA-1 of the content), synced and renamed.
// Then dest's directory is synced. Errors are local write errors (code 64).
func moveInto(src, dest, sum string) error {
	dir := filepath.Dir(dest)
	err := os.Rename(src, dest)
	if errors.Is(err, syscall.EXDEV) {
		if err = copyInto(src, dest, sum); err == nil {
			_ = os.Remove(src)
		}
	}
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return err
		}
		return &writeError{fmt.Errorf("move %s to %s: %w", src, dest, err)}
	}
	if err := syncDir(dir); err != nil {
		return &writeError{err}
	}
	return nil
}

// copyInto copies src to a temporary file beside dest, checks its SHA-1
// against sum, syncs it and renames it to dest.
func copyInto(src, dest, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".pgsidecar-*")
	if err != nil {
		return &writeError{fmt.Errorf("create a temporary file for %s: %w", dest, err)}
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha1.New()
	if _, err := io.CopyBuffer(io.MultiWriter(destWriter{tmp}, h), in, make([]byte, 1<<20)); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return fmt.Errorf("prefetched %s: SHA-1 %s, want %s", src, got, sum)
	}
	if err := tmp.Sync(); err != nil {
		return &writeError{fmt.Errorf("fsync %s: %w", tmp.Name(), err)}
	}
	if err := tmp.Close(); err != nil {
		return &writeError{fmt.Errorf("close %s: %w", tmp.Name(), err)}
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return &writeError{fmt.Errorf("rename into %s: %w", dest, err)}
	}
	ok = true
	return nil
}
