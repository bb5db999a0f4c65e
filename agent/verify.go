package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// codeVerify is the exit code of a verify that found problems (pgBackRest's
// command error, 104).
const codeVerify = 104

// VerifyStateFile is the name of the object, in backup/<stanza>/, in which
// verify records the objects it found good, so that the next run reads only
// what is new or changed. It is gzip-compressed JSON, encrypted with
// backup.info's sub-passphrase in an encrypted repository. Its name is not a
// backup label, so pgBackRest (info, verify, expire) and pgsidecar's expire
// ignore it. Deleting it forces the next verify to read everything again.
const VerifyStateFile = "pgsidecar-verify.state"

// defaultWALSegmentSize is the WAL segment size assumed for an archive id
// none of whose segments has been read (PostgreSQL's default, 16 MiB).
const defaultWALSegmentSize = 16 << 20

// VerifyReport is what verify found in one repository.
type VerifyReport struct {
	Repo string
	// WAL counts the archived WAL files verified; Files the backup files.
	// Both include the files not read again because they are unchanged
	// since a previous verify found them good (WALSkipped, FilesSkipped).
	WAL, Files int
	// WALSkipped and FilesSkipped count the files not read again.
	WALSkipped, FilesSkipped int
	// Backups lists the backup labels checked.
	Backups []string
	// Problems names every bad object and what is wrong with it.
	Problems []string
}

// verifyState is the content of VerifyStateFile.
type verifyState struct {
	Version int `json:"version"`
	// Objects maps the key of each object found good to its size and
	// modification time (Unix nanoseconds) when it was read.
	Objects map[string][2]int64 `json:"objects"`
	// SegmentSize maps archive ids to the WAL segment size read there.
	SegmentSize map[string]int64 `json:"segmentSize,omitempty"`
}

const verifyStateVersion = 1

// verifier holds one repository's verify run.
type verifier struct {
	rs      *repo.Repository
	workers int
	log     *zap.Logger
	old     verifyState
	// force reads every object even when the state says it is unchanged.
	force bool

	mu       sync.Mutex
	problems []string
	// read holds the objects read in this run; bad those with a problem.
	read map[string]storage.ObjectInfo
	bad  map[string]bool
	// skipped holds the objects not read again.
	skipped map[string]storage.ObjectInfo
	// segSizes collects the decompressed size of the full segments read, per
	// archive id.
	segSizes map[string]map[int64][]string
}

func (v *verifier) addf(format string, args ...any) {
	v.mu.Lock()
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

// fail records a problem with the object key.
func (v *verifier) fail(key, format string, args ...any) {
	v.mu.Lock()
	v.bad[key] = true
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

// unchanged reports whether oi was found good by a previous verify and has
// not changed since (same key, size and modification time); it is then
// recorded as skipped.
func (v *verifier) unchanged(oi storage.ObjectInfo) bool {
	if v.force || oi.ModTime.IsZero() {
		return false
	}
	rec, ok := v.old.Objects[oi.Key]
	if !ok || rec[0] != oi.Size || rec[1] != oi.ModTime.UnixNano() {
		return false
	}
	v.mu.Lock()
	v.skipped[oi.Key] = oi
	v.mu.Unlock()
	return true
}

func (v *verifier) markRead(oi storage.ObjectInfo) {
	v.mu.Lock()
	v.read[oi.Key] = oi
	v.mu.Unlock()
}

// good reports whether key was read or skipped in this run without a
// problem.
func (v *verifier) good(key string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, r := v.read[key]
	_, s := v.skipped[key]
	return (r || s) && !v.bad[key]
}

// Verify reads back every archived WAL file and every file of every
// backup in each repository: it decrypts, decompresses and checks each one
// against the SHA-1 and size that name or describe it. It also reports gaps
// in the WAL archive and backups whose WAL (archive start to stop) is
// missing or bad. Files unchanged since a previous verify found them good
// are not read again (see VerifyStateFile). It prints a summary and fails
// (exit 104) naming each bad object when any check fails.
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
		} else {
			fmt.Fprintf(out, ": %d problems\n", len(rep.Problems))
			for _, p := range rep.Problems {
				fmt.Fprintf(out, "  %s\n", p)
			}
			bad += len(rep.Problems)
		}
		if rep.WALSkipped+rep.FilesSkipped > 0 {
			fmt.Fprintf(out, "%s: %d WAL files and %d backup files unchanged since the last verify were not read again\n",
				rep.Repo, rep.WALSkipped, rep.FilesSkipped)
		}
	}
	if bad > 0 {
		return withCode(codeVerify, fmt.Errorf("verify found %d problems", bad))
	}
	return nil
}

// VerifyRepo checks one repository; problems with objects are reported,
// not returned. An error means the repository could not be read at all.
// With --set only that backup (and the whole WAL archive) is checked, and
// every file is read again whatever the state says: --set forces a full
// re-check.
func VerifyRepo(ctx context.Context, cfg *config.Config, r Repo, log *zap.Logger) (VerifyReport, error) {
	rs := openStanza(cfg, r)
	rep := VerifyReport{Repo: r.Name()}
	ai, bi, err := loadStanzaInfo(ctx, rs)
	if err != nil {
		return rep, err
	}
	v := &verifier{
		rs: rs, workers: max(cfg.ProcessMax, 1), log: log, force: cfg.Set != "",
		read: map[string]storage.ObjectInfo{}, bad: map[string]bool{},
		skipped: map[string]storage.ObjectInfo{}, segSizes: map[string]map[int64][]string{},
	}
	if rs.Encrypted() {
		if ai.CipherPass == "" {
			v.addf("%s: names no cipher passphrase in an encrypted repository", rs.ArchiveKey(repo.ArchiveInfoFile))
		}
		if bi.CipherPass == "" {
			v.addf("%s: names no cipher passphrase in an encrypted repository", rs.BackupKey(repo.BackupInfoFile))
		}
	}
	v.old = loadVerifyState(ctx, rs, bi.CipherPass, log)

	wal, err := v.verifyWAL(ctx, ai)
	if err != nil {
		return rep, err
	}
	rep.WAL = wal.files
	segSize := v.segmentSizes(wal)
	v.walGaps(wal, segSize)

	backupObjects, err := listObjects(ctx, rs.Store(), rs.BackupKey(""))
	if err != nil {
		return rep, err
	}
	if rep.Backups, rep.Files, rep.FilesSkipped, err = v.verifyBackups(ctx, bi, cfg.Set, backupObjects); err != nil {
		return rep, err
	}
	v.checkConsistency(ai, bi, cfg.Set, wal, segSize)
	for k := range v.skipped {
		if strings.HasPrefix(k, rs.ArchiveKey("")) {
			rep.WALSkipped++
		}
	}

	v.saveState(ctx, bi.CipherPass, wal.objects, backupObjects, segSize)
	slices.Sort(v.problems)
	rep.Problems = v.problems
	return rep, nil
}

// listObjects lists every object under prefix.
func listObjects(ctx context.Context, s storage.Store, prefix string) (map[string]storage.ObjectInfo, error) {
	objs := map[string]storage.ObjectInfo{}
	if err := s.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		objs[oi.Key] = oi
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return objs, nil
}

// walArchive is what the listing of archive/<stanza>/ holds.
type walArchive struct {
	files   int
	objects map[string]storage.ObjectInfo
	// segments maps archive id, then full segment name, to the keys of the
	// objects holding it.
	segments map[string]map[string][]string
}

// verifyWAL checks every file under archive/<stanza>/: segments against the
// SHA-1 in their name, history and backup-history files by decrypting them.
func (v *verifier) verifyWAL(ctx context.Context, ai *repo.ArchiveInfo) (walArchive, error) {
	prefix := v.rs.ArchiveKey("")
	w := walArchive{segments: map[string]map[string][]string{}}
	objs, err := listObjects(ctx, v.rs.Store(), prefix)
	if err != nil {
		return w, err
	}
	delete(objs, prefix+repo.ArchiveInfoFile)
	delete(objs, prefix+repo.ArchiveInfoFile+repo.CopyExt)
	w.objects = objs
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
		id, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), "/")
		if wf, err := repo.ParseWALRepoFileName(path.Base(k)); err == nil && !wf.Partial {
			if w.segments[id] == nil {
				w.segments[id] = map[string][]string{}
			}
			w.segments[id][wf.Segment] = append(w.segments[id][wf.Segment], k)
		}
	}
	slices.Sort(keys)
	w.files = len(keys)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.workers)
	for _, key := range keys {
		oi := objs[key]
		if v.unchanged(oi) {
			continue
		}
		v.markRead(oi)
		g.Go(func() error {
			v.checkWALFile(gctx, ai.CipherPass, oi)
			return gctx.Err()
		})
	}
	return w, g.Wait()
}

func (v *verifier) checkWALFile(ctx context.Context, pass string, oi storage.ObjectInfo) {
	key := oi.Key
	name := path.Base(key)
	wf, err := repo.ParseWALRepoFileName(name)
	if err != nil {
		// History and backup-history files are stored whole, uncompressed.
		if repo.IsTimelineHistory(name) || repo.IsBackupHistoryFile(name) {
			if _, err := v.rs.CheckFile(ctx, key, storage.Range{}, pass, compress.None); err != nil {
				v.fail(key, "%s: %s", key, v.explain(ctx, key, storage.Range{}, pass, err))
			}
			return
		}
		v.fail(key, "%s: not a WAL, history or backup-history file", key)
		return
	}
	ct, err := wf.Compress.Codec()
	if err != nil {
		v.fail(key, "%s: %v", key, err)
		return
	}
	got, err := v.rs.CheckFile(ctx, key, storage.Range{}, pass, ct)
	switch {
	case err != nil:
		v.fail(key, "%s: %s", key, v.explain(ctx, key, storage.Range{}, pass, err))
	case got.SHA1 != wf.SHA1:
		v.fail(key, "%s: content SHA-1 %s does not match the name (%v)", key, got.SHA1, repo.ErrChecksumMismatch)
	case !wf.Partial && got.Size&(got.Size-1) != 0:
		v.fail(key, "%s: size %d is not a WAL segment size", key, got.Size)
	case !wf.Partial:
		id, _, _ := strings.Cut(strings.TrimPrefix(key, v.rs.ArchiveKey("")), "/")
		v.mu.Lock()
		if v.segSizes[id] == nil {
			v.segSizes[id] = map[int64][]string{}
		}
		v.segSizes[id][got.Size] = append(v.segSizes[id][got.Size], key)
		v.mu.Unlock()
	}
}

// explain describes a failed read of key (decrypted with pass), naming
// cipher problems plainly: a plaintext object in an encrypted repository,
// one encrypted with another passphrase, an encrypted one in a plain
// repository.
func (v *verifier) explain(ctx context.Context, key string, rng storage.Range, pass string, err error) string {
	switch {
	case errors.Is(err, storage.ErrNotExist):
		return "missing"
	case errors.Is(err, cipher.ErrNotEncrypted) || errors.Is(err, repo.ErrNotEncrypted):
		return fmt.Sprintf("not encrypted in an encrypted repository (%v)", err)
	case errors.Is(err, cipher.ErrWrongPassphrase) || errors.Is(err, repo.ErrWrongPassphrase):
		return fmt.Sprintf("does not decrypt with the passphrase its info file or manifest names: another passphrase, or a truncated or corrupted object (%v)", err)
	}
	if v.rs.Encrypted() && pass != "" {
		// Garbage from a wrong passphrase usually fails decompression
		// before the final padding is checked: decrypt alone to tell.
		if rc, gerr := v.rs.Store().Get(ctx, key, rng); gerr == nil {
			dr, derr := cipher.NewDecrypter(rc, []byte(pass))
			if derr == nil {
				_, derr = io.Copy(io.Discard, dr)
			}
			_ = rc.Close()
			if errors.Is(derr, cipher.ErrWrongPassphrase) {
				return fmt.Sprintf("does not decrypt with the passphrase its info file or manifest names: another passphrase, or a truncated or corrupted object (%v)", err)
			}
		}
		return err.Error()
	}
	if !v.rs.Encrypted() {
		head := rng
		head.Length = 8
		if rc, gerr := v.rs.Store().Get(ctx, key, head); gerr == nil {
			b, _ := io.ReadAll(io.LimitReader(rc, 8))
			_ = rc.Close()
			if cipher.IsEncrypted(b) {
				return fmt.Sprintf("encrypted in a repository without encryption (%v)", err)
			}
		}
	}
	return err.Error()
}

// segmentSizes returns the WAL segment size of each archive id: the size of
// the segments read (a segment of another size is a problem), else the size
// a previous verify recorded, else 16 MiB.
func (v *verifier) segmentSizes(w walArchive) map[string]int64 {
	sizes := map[string]int64{}
	for id := range w.segments {
		sizes[id] = defaultWALSegmentSize
		if s, ok := v.old.SegmentSize[id]; ok && s > 0 {
			sizes[id] = s
		}
		bySize := v.segSizes[id]
		if len(bySize) == 0 {
			continue
		}
		best := int64(0)
		for s, keys := range bySize {
			if best == 0 || len(keys) > len(bySize[best]) || (len(keys) == len(bySize[best]) && s > best) {
				best = s
			}
		}
		sizes[id] = best
		for s, keys := range bySize {
			if s == best {
				continue
			}
			for _, k := range keys {
				v.fail(k, "%s: size %d differs from the WAL segment size %d of archive %s", k, s, best, id)
			}
		}
	}
	return sizes
}

// segmentsPerLog returns how many segments of size segSize one WAL "log"
// (the middle 8 digits of a segment name) holds: 4 GiB / segSize, one less
// before PostgreSQL 9.3, which skipped the last segment of each log.
func segmentsPerLog(archiveID string, segSize int64) uint64 {
	n := uint64(1<<32) / uint64(segSize)
	if version, _, err := repo.ParseArchiveID(archiveID); err == nil {
		if num, err := repo.PgVersionNum(version); err == nil && num < 90300 {
			n--
		}
	}
	return n
}

// walPos is a segment's timeline and position (log * segments per log +
// segment).
type walPos struct {
	tl  uint32
	pos uint64
}

func parseWALPos(name string, perLog uint64) (walPos, bool) {
	tl, log, seg, err := repo.ParseWALSegment(name)
	if err != nil || uint64(seg) >= perLog {
		return walPos{}, false
	}
	return walPos{tl: tl, pos: uint64(log)*perLog + uint64(seg)}, true
}

func (p walPos) name(perLog uint64) string {
	return fmt.Sprintf("%08X%08X%08X", p.tl, p.pos/perLog, p.pos%perLog)
}

// walGaps reports, per archive id and timeline, the segments missing
// between the first and the last archived one.
func (v *verifier) walGaps(w walArchive, segSize map[string]int64) {
	for id, segs := range w.segments {
		perLog := segmentsPerLog(id, segSize[id])
		byTL := map[uint32][]uint64{}
		for name := range segs {
			if p, ok := parseWALPos(name, perLog); ok {
				byTL[p.tl] = append(byTL[p.tl], p.pos)
			}
		}
		for tl, list := range byTL {
			slices.Sort(list)
			for i := 1; i < len(list); i++ {
				if list[i] == list[i-1]+1 {
					continue
				}
				first, last := walPos{tl, list[i-1] + 1}, walPos{tl, list[i] - 1}
				if first == last {
					v.addf("archive %s: timeline %d: WAL segment %s is missing (gap between %s and %s)",
						id, tl, first.name(perLog), walPos{tl, list[i-1]}.name(perLog), walPos{tl, list[i]}.name(perLog))
				} else {
					v.addf("archive %s: timeline %d: %d WAL segments %s to %s are missing (gap between %s and %s)",
						id, tl, last.pos-first.pos+1, first.name(perLog), last.name(perLog),
						walPos{tl, list[i-1]}.name(perLog), walPos{tl, list[i]}.name(perLog))
				}
			}
		}
	}
}

// checkConsistency reports each backup whose WAL, from its archive start
// to its archive stop segment, is not all in the archive and good.
func (v *verifier) checkConsistency(ai *repo.ArchiveInfo, bi *repo.BackupInfo, set string, w walArchive, segSize map[string]int64) {
	for _, b := range bi.Backups {
		if (set != "" && b.Label != set) || b.ArchiveStart == "" || b.ArchiveStop == "" {
			continue
		}
		var id string
		for _, h := range bi.History {
			if h.ID == b.DBID {
				var err error
				if id, err = ai.ArchiveIDMatch(h.ID, h.Version, h.SystemID); err != nil {
					v.addf("backup %s: not consistent: %v", b.Label, err)
				}
			}
		}
		if id == "" {
			continue
		}
		perLog := segmentsPerLog(id, segSize[id])
		start, ok1 := parseWALPos(b.ArchiveStart, perLog)
		stop, ok2 := parseWALPos(b.ArchiveStop, perLog)
		if !ok1 || !ok2 {
			v.addf("backup %s: not consistent: archive start %s or stop %s is not a WAL segment", b.Label, b.ArchiveStart, b.ArchiveStop)
			continue
		}
		var need []string
		if start.tl == stop.tl && start.pos <= stop.pos {
			for p := start.pos; p <= stop.pos; p++ {
				need = append(need, walPos{start.tl, p}.name(perLog))
			}
		} else {
			need = []string{b.ArchiveStart, b.ArchiveStop}
		}
		var missing, bad []string
		for _, seg := range need {
			keys := w.segments[id][seg]
			if len(keys) == 0 {
				missing = append(missing, seg)
				continue
			}
			if !slices.ContainsFunc(keys, v.good) {
				bad = append(bad, seg)
			}
		}
		if len(missing) > 0 {
			v.addf("backup %s: not consistent: WAL %s missing from archive %s (needs %s to %s)",
				b.Label, abbreviate(missing), id, b.ArchiveStart, b.ArchiveStop)
		}
		if len(bad) > 0 {
			v.addf("backup %s: not consistent: WAL %s in archive %s is bad (needs %s to %s)",
				b.Label, abbreviate(bad), id, b.ArchiveStart, b.ArchiveStop)
		}
	}
}

// abbreviate lists up to five names, then how many more there are.
func abbreviate(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:5], ", "), len(names)-5)
}

// verifyBackups checks the files of every backup (or only set, when given).
func (v *verifier) verifyBackups(ctx context.Context, bi *repo.BackupInfo, set string, objs map[string]storage.ObjectInfo) (labels []string, files, skipped int, err error) {
	for _, b := range bi.Backups {
		if set != "" && b.Label != set {
			continue
		}
		labels = append(labels, b.Label)
		m, err := v.rs.LoadManifest(ctx, b.Label, bi.CipherPass)
		if err != nil {
			v.addf("backup %s: %s", b.Label, v.explain(ctx, v.rs.BackupKey(repo.BackupManifestPath(b.Label)), storage.Range{}, bi.CipherPass, err))
			continue
		}
		if v.rs.Encrypted() && m.CipherPass == "" {
			v.addf("backup %s: the manifest names no cipher passphrase in an encrypted repository", b.Label)
		}
		n, s, err := v.verifyBackupFiles(ctx, m, objs)
		if err != nil {
			return labels, files, skipped, err
		}
		v.log.Debug("backup verified", zap.String("repo", v.rs.Name()), zap.String("label", b.Label),
			zap.Int("files", n), zap.Int("unchanged", s))
		files += n
		skipped += s
	}
	if set != "" && len(labels) == 0 {
		return nil, 0, 0, withCode(75, fmt.Errorf("--set=%s: no such backup in %s", set, v.rs.Name()))
	}
	return labels, files, skipped, nil
}

func (v *verifier) verifyBackupFiles(ctx context.Context, m *repo.Manifest, objs map[string]storage.ObjectInfo) (files, skipped int, err error) {
	ct, err := m.Options.CompressType.Codec()
	if err != nil {
		v.addf("backup %s: %v", m.Label, err)
		return 0, 0, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.workers)
	for i := range m.Files {
		f := &m.Files[i]
		if f.BlockIncrSize != 0 {
			v.addf("backup %s: %s: block-incremental files are not verified by pgsidecar yet", m.Label, f.Name)
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
			v.addf("backup %s: %s: %v", m.Label, f.Name, err)
			continue
		}
		key := v.rs.BackupKey(rel)
		files++
		oi, listed := objs[key]
		if listed && v.unchanged(oi) {
			skipped++
			continue
		}
		if listed {
			v.markRead(oi)
		}
		rng := storage.Range{}
		if f.BundleID != 0 {
			rng = storage.Range{Offset: int64(f.BundleOffset), Length: int64(f.RepoSize)}
		}
		g.Go(func() error {
			got, err := v.rs.CheckFile(gctx, key, rng, m.CipherPass, ct)
			switch {
			case err != nil:
				v.fail(key, "backup %s: %s: %s (%s)", m.Label, f.Name, v.explain(gctx, key, rng, m.CipherPass, err), key)
			case uint64(got.Size) != f.Size:
				v.fail(key, "backup %s: %s: size %d, manifest says %d (%s)", m.Label, f.Name, got.Size, f.Size, key)
			case f.Checksum != "" && got.SHA1 != f.Checksum:
				v.fail(key, "backup %s: %s: SHA-1 %s, manifest says %s (%s): %v", m.Label, f.Name, got.SHA1, f.Checksum, key, repo.ErrChecksumMismatch)
			}
			return gctx.Err()
		})
	}
	return files, skipped, g.Wait()
}

// loadVerifyState reads the state a previous verify left; a missing or
// unreadable state means everything is read again.
func loadVerifyState(ctx context.Context, rs *repo.Repository, pass string, log *zap.Logger) verifyState {
	st := verifyState{}
	key := rs.BackupKey(VerifyStateFile)
	rc, err := rs.OpenFile(ctx, key, storage.Range{}, pass, compress.Gz)
	if err == nil {
		err = json.NewDecoder(rc).Decode(&st)
		_ = rc.Close()
	}
	if err == nil && st.Version != verifyStateVersion {
		err = fmt.Errorf("state version %d, want %d", st.Version, verifyStateVersion)
	}
	if err != nil {
		if !errors.Is(err, storage.ErrNotExist) {
			log.Warn("ignoring the verify state, every file is read", zap.String("repo", rs.Name()), zap.String("key", key), zap.Error(err))
		}
		return verifyState{}
	}
	return st
}

// saveState records the objects found good in this run and those still
// unchanged since a previous run found them good. A failure to write is
// only logged: verify never fails because it cannot remember.
func (v *verifier) saveState(ctx context.Context, pass string, wal, backup map[string]storage.ObjectInfo, segSize map[string]int64) {
	if v.rs.Encrypted() && pass == "" {
		return // reported: backup.info names no passphrase
	}
	st := verifyState{Version: verifyStateVersion, Objects: map[string][2]int64{}, SegmentSize: map[string]int64{}}
	record := func(oi storage.ObjectInfo) {
		if !oi.ModTime.IsZero() && !v.bad[oi.Key] {
			st.Objects[oi.Key] = [2]int64{oi.Size, oi.ModTime.UnixNano()}
		}
	}
	for _, oi := range v.read {
		record(oi)
	}
	for _, oi := range v.skipped {
		record(oi)
	}
	// Objects not looked at in this run (a --set run) keep their record
	// while they are unchanged.
	for _, objs := range []map[string]storage.ObjectInfo{wal, backup} {
		for k, oi := range objs {
			if rec, ok := v.old.Objects[k]; ok && rec[0] == oi.Size && rec[1] == oi.ModTime.UnixNano() {
				if _, seen := st.Objects[k]; !seen && !v.bad[k] {
					st.Objects[k] = rec
				}
			}
		}
	}
	maps.Copy(st.SegmentSize, segSize)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	err := json.NewEncoder(zw).Encode(&st)
	if err == nil {
		err = zw.Close()
	}
	data := buf.Bytes()
	if err == nil && pass != "" {
		data, err = cipher.Encrypt(data, []byte(pass))
	}
	key := v.rs.BackupKey(VerifyStateFile)
	if err == nil {
		err = v.rs.Store().Put(ctx, key, bytes.NewReader(data))
	}
	if err != nil {
		v.log.Warn("could not save the verify state; the next verify reads every file again",
			zap.String("repo", v.rs.Name()), zap.String("key", key), zap.Error(err))
	}
}
