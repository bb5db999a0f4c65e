package agent

import (
	"bytes"
	"context"
	"crypto/aes"
	cbc "crypto/cipher"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// Stanza status codes of pgBackRest's info command (src/command/info/info.c).
const (
	infoCodeOK                = 0
	infoCodeMissingStanzaPath = 1
	infoCodeNoBackup          = 2
	infoCodeMissingStanzaData = 3
	infoCodeMixed             = 4
	infoCodePgMismatch        = 5
	infoCodeBackupMissing     = 6
	infoCodeOther             = 99
)

// infoStatusMessage is the message pgBackRest gives each status code.
var infoStatusMessage = map[int]string{
	infoCodeOK:                "ok",
	infoCodeMissingStanzaPath: "missing stanza path",
	infoCodeNoBackup:          "no valid backups",
	infoCodeMissingStanzaData: "missing stanza data",
	infoCodeMixed:             "different across repos",
	infoCodePgMismatch:        "database mismatch across repos",
	infoCodeBackupMissing:     "requested backup not found",
	infoCodeOther:             "other",
}

const (
	infoCipherNone  = "none"
	infoCipherMixed = "mixed"
	// infoStanzaInvalid names the stanza that carries repository errors when no stanza was found.
	infoStanzaInvalid = "[invalid]"
)

// infoWALDir and infoWALFile are pgBackRest's WAL_SEGMENT_DIR_REGEXP and WAL_SEGMENT_FILE_REGEXP.
var (
	infoWALDir  = regexp.MustCompile(`^[0-F]{16}$`)
	infoWALFile = regexp.MustCompile(`^[0-F]{24}-[0-f]{40}(\.gz|\.lz4|\.zst|\.xz|\.bz2)?$`)
)

// infoError is an error as pgBackRest reports it in the info command: its
// type name (FileMissingError, CryptoError, ...) and message.
type infoError struct {
	typ string
	msg string
}

func (e *infoError) Error() string { return "[" + e.typ + "] " + e.msg }

// infoRepoData is one repository's view of one stanza (pgBackRest's InfoRepoData).
type infoRepoData struct {
	key       int
	cipher    string
	pass      string
	status    int
	err       string
	backup    *repo.BackupInfo
	archive   *repo.ArchiveInfo
	manifest  *repo.Manifest
	backupIdx int
	// walMax is the newest WAL segment in the archive of the current
	// database and walMaxTime its object's modification time.
	walMax     string
	walMaxTime time.Time
}

// fail records err as the repository's status and drops what was loaded, as
// infoStanzaErrorAdd() does.
func (d *infoRepoData) fail(err *infoError) {
	d.status = infoCodeOther
	d.err = err.Error()
	d.backup, d.archive, d.manifest = nil, nil, nil
}

// infoStanzaData is a stanza over all repositories (pgBackRest's InfoStanzaRepo).
type infoStanzaData struct {
	name string
	// curSet, curVersion and curSystemID are the current cluster of the
	// first repository whose backup.info loaded.
	curSet      bool
	curVersion  string
	curSystemID uint64
	repos       []infoRepoData
}

// Report model, built once and rendered as text or JSON.
type (
	infoStanzaOut struct {
		name        string
		code        int
		cipher      string
		repos       []infoRepoOut
		db          []infoDBOut
		archive     []infoArchiveOut
		backups     []infoBackupOut
		curVersion  string
		curSystemID uint64
		// windows and daemon are pgsidecar's additions (see infoTextExtras).
		windows []infoWindowOut
		daemon  *QueueStatus
	}
	// infoWindowOut is the recovery window of one repository: from the
	// consistency point of the oldest backup of the current database to the
	// newest WAL segment of its archive. wal is empty when the archive does
	// not reach the backup's stop segment.
	infoWindowOut struct {
		repoKey int
		backup  *repo.Backup
		walMax  string
		wal     string
		walTime time.Time
	}
	infoRepoOut struct {
		key    int
		cipher string
		code   int
		msg    string
	}
	infoDBOut struct {
		id       uint32
		repoKey  int
		systemID uint64
		version  string
	}
	infoArchiveOut struct {
		dbID     uint32
		repoKey  int
		id       string
		min, max string
	}
	infoBackupOut struct {
		b       *repo.Backup
		repoKey int
		set     *infoSetOut
	}
	infoSetOut struct {
		dbs         []infoNameOID
		links       []infoLinkOut
		tablespaces []infoTablespaceOut
		errorList   []string
	}
	infoNameOID struct {
		name string
		oid  uint32
	}
	infoLinkOut struct {
		name, destination string
	}
	infoTablespaceOut struct {
		name, destination string
		oid               uint32
	}
)

// infoRun holds one execution of the info command.
type infoRun struct {
	cfg     *config.Config
	repos   []Repo
	stanzas []*infoStanzaData
	json    bool
	set     string
}

// Info writes pgBackRest's info report for cfg.Stanza (or, when cfg.Stanza is empty, every stanza found
// under backup/ in the repositories, as pgBackRest does) over repos, in cfg.Output format ("text" default, "json").
//
// After pgBackRest's report of each stanza come pgsidecar's additions (see infoTextExtras): the recovery
// window of each repository and, when the daemon of cfg.Stanza answers within infoDaemonTimeout, its
// running and queued backups.
//
// Problems of a repository (a missing stanza, an unreadable info file, a wrong passphrase) are reported in
// the output as pgBackRest reports them, not returned: the error is for a cancelled context and output
// failures only.
func Info(ctx context.Context, cfg *config.Config, repos []Repo, out io.Writer) error {
	var sel []Repo
	for _, r := range repos {
		if cfg.RepoSelected == 0 || r.Config.Index == cfg.RepoSelected {
			sel = append(sel, r)
		}
	}
	if len(sel) == 0 {
		return fmt.Errorf("info: no repository is configured")
	}
	run := &infoRun{cfg: cfg, repos: sel, json: cfg.Output == "json", set: cfg.Set}
	stanzas, err := run.collect(ctx)
	if err != nil {
		return err
	}
	// The daemon of the stanza, if one runs, tells what it backs up.
	if cfg.Stanza != "" && run.set == "" {
		if st := infoDaemonStatus(ctx, cfg); st != nil {
			for i := range stanzas {
				if stanzas[i].name == cfg.Stanza {
					stanzas[i].daemon = st
				}
			}
		}
	}
	var b []byte
	if run.json {
		b = infoJSON(nil, run.jsonValue(stanzas))
	} else {
		b = run.text(stanzas)
	}
	if _, err := out.Write(b); err != nil {
		return fmt.Errorf("write info: %w", err)
	}
	return nil
}

// newRepoData returns the initial state of repository i.
func (run *infoRun) newRepoData(i int) infoRepoData {
	r := run.repos[i].Config
	d := infoRepoData{key: r.Index, cipher: r.Cipher.Type}
	if d.cipher == "" {
		d.cipher = infoCipherNone
	}
	if d.cipher != infoCipherNone {
		d.pass = r.Cipher.Pass.Value()
	}
	return d
}

func (run *infoRun) stanza(name string) *infoStanzaData {
	for _, s := range run.stanzas {
		if s.name == name {
			return s
		}
	}
	return nil
}

// collect loads every repository (infoRender() up to the formatting) and returns the report.
func (run *infoRun) collect(ctx context.Context) ([]infoStanzaOut, error) {
	repoErr := make([]infoRepoData, len(run.repos))
	anyRepoErr := false
	backupFound := false
	for i := range run.repos {
		repoErr[i] = run.newRepoData(i)
		found, err := run.collectRepo(ctx, i)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if found {
			backupFound = true
		}
		if err != nil {
			repoErr[i].fail(err)
			anyRepoErr = true
		}
	}
	if anyRepoErr {
		if len(run.stanzas) == 0 {
			name := run.cfg.Stanza
			if name == "" {
				name = infoStanzaInvalid
			}
			run.stanzas = append(run.stanzas, &infoStanzaData{name: name, repos: repoErr})
		} else {
			for _, s := range run.stanzas {
				for i := range repoErr {
					if repoErr[i].err != "" {
						s.repos[i] = repoErr[i]
					}
				}
			}
		}
	}
	if run.set != "" && !backupFound {
		if s := run.stanza(run.cfg.Stanza); s != nil {
			for i := range s.repos {
				if s.repos[i].status == infoCodeOK {
					s.repos[i].status = infoCodeBackupMissing
					s.repos[i].backup = nil
				}
			}
		}
	}
	slices.SortFunc(run.stanzas, func(a, b *infoStanzaData) int { return strings.Compare(a.name, b.name) })
	out := make([]infoStanzaOut, 0, len(run.stanzas))
	for _, s := range run.stanzas {
		so, err := run.stanzaOut(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, so)
	}
	return out, nil
}

// collectRepo reads the stanzas of repository i. It reports whether the
// --set backup exists there; an error is a repository-level problem.
func (run *infoRun) collectRepo(ctx context.Context, i int) (bool, *infoError) {
	r := run.repos[i]
	found := false
	if run.set != "" {
		key := repo.StanzaBackupPath(run.cfg.Stanza) + "/" + repo.BackupManifestPath(run.set)
		_, err := r.Store.Stat(ctx, key)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, storage.ErrNotExist):
			return false, &infoError{"FileOpenError", fmt.Sprintf("unable to get info for path/file '%s': %v", infoRepoPath(r, key), err)}
		}
	}
	var names []string
	exists := true
	if run.cfg.Stanza != "" {
		ok, err := infoStanzaExists(ctx, r.Store, run.cfg.Stanza)
		if err != nil {
			return found, &infoError{"PathOpenError", fmt.Sprintf("unable to list file info for path '%s': %v", infoRepoPath(r, repo.BackupDir), err)}
		}
		exists = ok
		names = []string{run.cfg.Stanza}
	} else {
		var err error
		if names, err = infoListStanzas(ctx, r.Store); err != nil {
			return found, &infoError{"PathOpenError", fmt.Sprintf("unable to list file info for path '%s': %v", infoRepoPath(r, repo.BackupDir), err)}
		}
	}
	for _, name := range names {
		s := run.stanza(name)
		if s == nil {
			s = &infoStanzaData{name: name, repos: make([]infoRepoData, len(run.repos))}
			for j := range s.repos {
				s.repos[j] = run.newRepoData(j)
			}
			run.stanzas = append(run.stanzas, s)
		}
		run.updateStanza(ctx, s, i, exists, found)
	}
	return found, nil
}

// updateStanza loads the info files (and the --set manifest) of stanza s on
// repository i (infoUpdateStanza()).
func (run *infoRun) updateStanza(ctx context.Context, s *infoStanzaData, i int, exists, backupOnRepo bool) {
	d := &s.repos[i]
	r := run.repos[i]
	if !exists {
		d.status = infoCodeMissingStanzaPath
	} else if err := run.loadStanza(ctx, s.name, d, r, backupOnRepo); err != nil {
		d.fail(err)
	}
	if !s.curSet && d.backup != nil {
		if h, ok := infoHistory(d.backup.History, d.backup.CurrentID); ok {
			s.curSet, s.curVersion, s.curSystemID = true, h.Version, h.SystemID
		}
	}
}

func (run *infoRun) loadStanza(ctx context.Context, stanza string, d *infoRepoData, r Repo, backupOnRepo bool) *infoError {
	status := infoCodeOK
	backupKey := repo.StanzaBackupPath(stanza) + "/" + repo.BackupInfoFile
	var bi *repo.BackupInfo
	err := infoLoadFile(ctx, r, backupKey, d.pass, "info file", func(name string, data []byte) error {
		var err error
		bi, err = repo.LoadBackupInfo(name, data)
		return err
	})
	switch {
	case err != nil && err.typ == "FileMissingError":
		status = infoCodeMissingStanzaData
	case err != nil:
		err.msg += "\nHINT: backup.info cannot be opened and is required to perform a backup." +
			"\nHINT: has a stanza-create been performed?"
		if err.typ == "CryptoError" {
			err.msg += "\nHINT: use option --stanza if encryption settings are different for the stanza than the global settings."
		}
		return err
	}
	d.backup = bi
	if bi != nil {
		archiveKey := repo.StanzaArchivePath(stanza) + "/" + repo.ArchiveInfoFile
		err := infoLoadFile(ctx, r, archiveKey, d.pass, "info file", func(name string, data []byte) error {
			var err error
			d.archive, err = repo.LoadArchiveInfo(name, data)
			return err
		})
		if err != nil {
			err.msg += "\nHINT: archive.info cannot be opened but is required to push/get WAL segments." +
				"\nHINT: is archive_command configured correctly in postgresql.conf?" +
				"\nHINT: has a stanza-create been performed?" +
				"\nHINT: use --no-archive-check to disable archive checks during backup if you have an alternate archiving scheme."
			return err
		}
		if backupOnRepo {
			pass := ""
			if d.pass != "" {
				pass = bi.CipherPass
			}
			key := repo.StanzaBackupPath(stanza) + "/" + repo.BackupManifestPath(run.set)
			err := infoLoadFile(ctx, r, key, pass, "backup manifest file", func(name string, data []byte) error {
				var err error
				d.manifest, err = repo.LoadManifest(name, data)
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	d.status = status
	return nil
}

// stanzaOut builds the report of one stanza (stanzaInfoList()).
func (run *infoRun) stanzaOut(ctx context.Context, s *infoStanzaData) (infoStanzaOut, error) {
	so := infoStanzaOut{name: s.name, curVersion: s.curVersion, curSystemID: s.curSystemID}
	code := -1
	cipherType := ""
	for i := range s.repos {
		d := &s.repos[i]
		if d.status == infoCodeOK && d.backup == nil {
			d.status = infoCodeMissingStanzaPath
		}
		if d.backup != nil {
			if err := run.dbList(ctx, s, i, &so); err != nil {
				if ctx.Err() != nil {
					return so, ctx.Err()
				}
				d.fail(err)
			} else {
				if cur, ok := infoHistory(d.backup.History, d.backup.CurrentID); ok &&
					(!s.curSet || cur.Version != s.curVersion || cur.SystemID != s.curSystemID) {
					code = infoCodePgMismatch
				}
				if w, ok := infoWindow(d); ok && run.set == "" {
					so.windows = append(so.windows, w)
				}
			}
		}
		if d.status == infoCodeOK && (d.backup == nil || len(d.backup.Backups) == 0) {
			d.status = infoCodeNoBackup
		}
		if code != infoCodePgMismatch {
			switch {
			case i == 0:
				code = d.status
			case code != d.status:
				code = infoCodeMixed
			}
		}
		switch {
		case i == 0:
			cipherType = d.cipher
		case cipherType != d.cipher:
			cipherType = infoCipherMixed
		}
		ro := infoRepoOut{key: d.key, cipher: d.cipher, code: d.status, msg: infoStatusMessage[d.status]}
		if d.status == infoCodeOther {
			ro.msg = d.err
		}
		so.repos = append(so.repos, ro)
	}
	so.backups = run.backupList(s)
	so.code = code
	so.cipher = cipherType
	return so, nil
}

// dbList adds the database history of repository i, oldest first, and the
// WAL range of each archive id (the loop of stanzaInfoList() and archiveDbList()).
func (run *infoRun) dbList(ctx context.Context, s *infoStanzaData, i int, so *infoStanzaOut) *infoError {
	d := &s.repos[i]
	r := run.repos[i]
	type walRange struct {
		first, last string
		lastTime    time.Time
	}
	listed := map[string]walRange{}
	hist := d.backup.History
	for idx, h := range hist {
		so.db = append(so.db, infoDBOut{id: h.ID, repoKey: d.key, systemID: h.SystemID, version: h.Version})
		archiveID, err := infoArchiveID(d.archive, h)
		if err != nil {
			return err
		}
		wal, ok := listed[archiveID]
		if !ok {
			first, last, lastTime, lerr := infoWALRange(ctx, r.Store, repo.StanzaArchivePath(s.name)+"/"+archiveID+"/")
			if lerr != nil {
				return &infoError{"PathOpenError", fmt.Sprintf("unable to list file info for path '%s': %v",
					infoRepoPath(r, repo.StanzaArchivePath(s.name)+"/"+archiveID), lerr)}
			}
			wal = walRange{first, last, lastTime}
			listed[archiveID] = wal
		}
		if h.ID == d.backup.CurrentID {
			d.walMax, d.walMaxTime = wal.last, wal.lastTime
		}
		// The newest history entry is the current database: it is listed even without WAL.
		if idx == len(hist)-1 || wal.first != "" {
			so.archive = append(so.archive, infoArchiveOut{dbID: h.ID, repoKey: d.key, id: archiveID, min: wal.first, max: wal.last})
		}
	}
	return nil
}

// backupList merges the backups of every repository, oldest backup-timestamp-stop first (backupList()).
func (run *infoRun) backupList(s *infoStanzaData) []infoBackupOut {
	total := 0
	for i := range s.repos {
		if bi := s.repos[i].backup; bi != nil {
			total += len(bi.Backups)
		}
	}
	var out []infoBackupOut
	next := 0
	for processed := 0; processed < total; processed++ {
		var nextTime int64
		for i := range s.repos {
			d := &s.repos[i]
			if d.backup != nil && d.backupIdx < len(d.backup.Backups) {
				b := &d.backup.Backups[d.backupIdx]
				if nextTime == 0 || b.TimestampStop < nextTime {
					nextTime = b.TimestampStop
					next = i
				}
			}
		}
		d := &s.repos[next]
		b := &d.backup.Backups[d.backupIdx]
		d.backupIdx++
		if run.set != "" && b.Label != run.set {
			continue
		}
		if t := run.cfg.Type; t != "" && string(b.Type) != t {
			continue
		}
		bo := infoBackupOut{b: b, repoKey: d.key}
		if run.set != "" {
			bo.set = infoSetDetails(d.manifest)
			d.manifest = nil
		}
		out = append(out, bo)
	}
	return out
}

// infoSetDetails returns the manifest details that --set adds.
func infoSetDetails(m *repo.Manifest) *infoSetOut {
	set := &infoSetOut{}
	if m == nil {
		return set
	}
	dbs := slices.Clone(m.Databases)
	slices.SortFunc(dbs, func(a, b repo.ManifestDatabase) int { return strings.Compare(a.Name, b.Name) })
	for _, db := range dbs {
		if db.Name != "template0" && db.Name != "template1" {
			set.dbs = append(set.dbs, infoNameOID{db.Name, db.ID})
		}
	}
	targets := slices.Clone(m.Targets)
	slices.SortFunc(targets, func(a, b repo.ManifestTarget) int { return strings.Compare(a.Name, b.Name) })
	for _, t := range targets {
		if t.Type != repo.TargetLink {
			continue
		}
		switch {
		case t.TablespaceName != "":
			set.tablespaces = append(set.tablespaces, infoTablespaceOut{t.TablespaceName, t.Path, t.TablespaceID})
		case t.File != "":
			set.links = append(set.links, infoLinkOut{t.File, t.Path + "/" + t.File})
		default:
			set.links = append(set.links, infoLinkOut{infoPathPg(t.Name), t.Path})
		}
	}
	files := slices.Clone(m.Files)
	slices.SortFunc(files, func(a, b repo.ManifestFile) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range files {
		if f.ChecksumPageError {
			set.errorList = append(set.errorList, infoPathPg(f.Name))
		}
	}
	return set
}

// infoPathPg is manifestPathPg(): the path relative to PGDATA.
func infoPathPg(name string) string {
	if rest, ok := strings.CutPrefix(name, "pg_data/"); ok {
		return rest
	}
	if name == "pg_data" {
		return ""
	}
	return name
}

// infoHistory returns the history entry id.
func infoHistory(hist []repo.PgHistory, id uint32) (repo.PgHistory, bool) {
	for _, h := range hist {
		if h.ID == id {
			return h, true
		}
	}
	return repo.PgHistory{}, false
}

// infoArchiveID is infoArchiveIdHistoryMatch(): the archive id of a
// backup.info history entry, searching archive.info newest first.
func infoArchiveID(ai *repo.ArchiveInfo, h repo.PgHistory) (string, *infoError) {
	for i := len(ai.History) - 1; i >= 0; i-- {
		a := ai.History[i]
		if a.ID == h.ID && a.SystemID == h.SystemID && a.Version == h.Version {
			return a.ArchiveID(), nil
		}
	}
	for i := len(ai.History) - 1; i >= 0; i-- {
		a := ai.History[i]
		if a.SystemID == h.SystemID && a.Version == h.Version {
			return a.ArchiveID(), nil
		}
	}
	return "", &infoError{"ArchiveMismatchError", fmt.Sprintf(
		"unable to retrieve the archive id for database version '%s' and system-id '%d'", h.Version, h.SystemID)}
}

// infoWALRange lists prefix (archive/<stanza>/<archive id>/) once and returns
// the first and last WAL segment stored in a WAL segment directory under it,
// and the modification time of the last one's object.
func infoWALRange(ctx context.Context, s storage.Store, prefix string) (string, string, time.Time, error) {
	var minDir, minFile, maxDir, maxFile string
	var maxTime time.Time
	found := false
	err := s.List(ctx, prefix, func(o storage.ObjectInfo) error {
		dir, file, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || strings.Contains(file, "/") || !infoWALDir.MatchString(dir) || !infoWALFile.MatchString(file) {
			return nil
		}
		if !found || dir < minDir || (dir == minDir && file < minFile) {
			minDir, minFile = dir, file
		}
		if !found || dir > maxDir || (dir == maxDir && file > maxFile) {
			maxDir, maxFile, maxTime = dir, file, o.ModTime
		}
		found = true
		return nil
	})
	if err != nil || !found {
		return "", "", time.Time{}, err
	}
	return minFile[:repo.WALSegmentNameSize], maxFile[:repo.WALSegmentNameSize], maxTime, nil
}

var errInfoStop = errors.New("stop listing")

// infoStanzaExists reports whether anything is stored under backup/<stanza>.
func infoStanzaExists(ctx context.Context, s storage.Store, stanza string) (bool, error) {
	key := repo.StanzaBackupPath(stanza)
	found := false
	err := s.List(ctx, key+"/", func(storage.ObjectInfo) error {
		found = true
		return errInfoStop
	})
	if err != nil && !errors.Is(err, errInfoStop) {
		return false, err
	}
	if found {
		return true, nil
	}
	// A file named like the stanza is listed by pgBackRest too.
	if _, err := s.Stat(ctx, key); err == nil {
		return true, nil
	} else if !errors.Is(err, storage.ErrNotExist) {
		return false, err
	}
	return false, nil
}

// infoListStanzas returns the names under backup/, sorted.
func infoListStanzas(ctx context.Context, s storage.Store) ([]string, error) {
	var names []string
	prefix := repo.BackupDir + "/"
	err := s.List(ctx, prefix, func(o storage.ObjectInfo) error {
		name, _, _ := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if name != "" && (len(names) == 0 || names[len(names)-1] != name) && !slices.Contains(names, name) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// infoRepoPath is the path pgBackRest shows for key: the repository path and the key.
func infoRepoPath(r Repo, key string) string {
	base := strings.TrimSuffix(r.Config.Path, "/")
	return base + "/" + key
}

// infoLoadFile loads an info file or manifest, falling back to its copy, and
// reports failures with pgBackRest's infoLoad() message: "unable to load
// <what> '<path>' or '<path>.copy':" then one "<type>: <message>" line per
// file tried. parse receives the decrypted content.
func infoLoadFile(ctx context.Context, r Repo, key, pass, what string, parse func(name string, data []byte) error) *infoError {
	path := infoRepoPath(r, key)
	var typ string
	var msg strings.Builder
	fmt.Fprintf(&msg, "unable to load %s '%s' or '%s%s':", what, path, path, repo.CopyExt)
	for _, k := range []string{key, key + repo.CopyExt} {
		e := infoLoadOne(ctx, r, k, pass, parse)
		if e == nil {
			return nil
		}
		switch {
		case typ == "":
			typ = e.typ
		case typ != e.typ && typ == "FileMissingError":
			typ = e.typ
		case typ != e.typ && e.typ != "FileMissingError":
			typ = "FileOpenError"
		}
		fmt.Fprintf(&msg, "\n%s: %s", e.typ, e.msg)
	}
	return &infoError{typ, msg.String()}
}

// infoLoadOne reads, decrypts and parses one file, returning the error
// pgBackRest would raise for it.
func infoLoadOne(ctx context.Context, r Repo, key, pass string, parse func(name string, data []byte) error) *infoError {
	path := infoRepoPath(r, key)
	data, err := storage.ReadAll(ctx, r.Store, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return &infoError{"FileMissingError", fmt.Sprintf("unable to open missing file '%s' for read", path)}
		}
		return &infoError{"FileOpenError", fmt.Sprintf("unable to open file '%s' for read: %v", path, err)}
	}
	if pass != "" {
		plain, cerr := infoDecrypt(data, pass)
		if cerr != nil {
			return cerr
		}
		data = plain
	}
	if e := infoIniCheck(data, true); e != nil {
		return e
	}
	if err := parse(key, data); err != nil {
		var pe *repo.ParseError
		switch {
		case errors.As(err, &pe) && errors.Is(err, repo.ErrChecksum):
			return &infoError{"ChecksumError", pe.Msg}
		case errors.As(err, &pe):
			return &infoError{"FormatError", pe.Msg}
		}
		return &infoError{"FormatError", err.Error()}
	}
	return nil
}

// infoDecrypt decrypts an info file as pgBackRest's cipher filter does while
// the ini parser reads it: when the passphrase is wrong, the lines decrypted
// before the final block reach the parser first, so the error is the
// parser's about that garbage, else the final block's "unable to flush".
func infoDecrypt(data []byte, pass string) ([]byte, *infoError) {
	crypto := func(msg string) *infoError {
		return &infoError{"CryptoError", msg + "\nHINT: is or was the repo encrypted?"}
	}
	const header = 16
	if len(data) < header {
		return nil, crypto("cipher header missing")
	}
	if !bytes.HasPrefix(data, []byte("Salted__")) {
		return nil, crypto("cipher header invalid")
	}
	plain, err := cipher.Decrypt(data, []byte(pass))
	if err == nil {
		return plain, nil
	}
	// Decrypt what OpenSSL hands out before EVP_DecryptFinal: every whole
	// block but the last one when the input ends on a block boundary.
	ct := data[header:]
	n := len(ct) / aes.BlockSize * aes.BlockSize
	if n == len(ct) && n > 0 {
		n -= aes.BlockSize
	}
	avail := make([]byte, n)
	if n > 0 {
		key, iv := infoBytesToKey([]byte(pass), data[8:header])
		block, berr := aes.NewCipher(key)
		if berr != nil {
			return nil, crypto("unable to flush")
		}
		cbc.NewCBCDecrypter(block, iv).CryptBlocks(avail, ct[:n])
	}
	if e := infoIniCheck(avail, false); e != nil {
		return nil, e
	}
	return nil, crypto("unable to flush")
}

// infoBytesToKey is OpenSSL's EVP_BytesToKey(aes-256-cbc, sha1, salt, pass, 1).
func infoBytesToKey(pass, salt []byte) (key, iv []byte) {
	var out, prev []byte
	for len(out) < 48 {
		h := sha1.New()
		h.Write(prev)
		h.Write(pass)
		h.Write(salt)
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:32], out[32:48]
}

// infoIniCheck applies the line checks of pgBackRest's strict ini reader to
// data and returns its first error. atEOF says whether the final line
// without a linefeed is read too.
func infoIniCheck(data []byte, atEOF bool) *infoError {
	section := false
	lineNo := 0
	for len(data) > 0 {
		end := bytes.IndexByte(data, '\n')
		var line []byte
		if end < 0 {
			if !atEOF {
				return nil
			}
			line, data = data, nil
		} else {
			line, data = data[:end], data[end+1:]
		}
		lineNo++
		if len(line) == 0 {
			continue
		}
		// pgBackRest formats the line as a C string.
		shown := line
		if i := bytes.IndexByte(shown, 0); i >= 0 {
			shown = shown[:i]
		}
		format := func(msg string) *infoError {
			return &infoError{"FormatError", fmt.Sprintf("%s at line %d: %s", msg, lineNo, shown)}
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			if len(line) == 2 {
				return format("invalid empty section")
			}
			section = true
			continue
		}
		if !section {
			return format("key/value found outside of section")
		}
		eq := bytes.IndexByte(shown, '=')
		if eq < 0 {
			return format("missing '=' in key/value")
		}
	}
	return nil
}

// jsonValue returns the report as pgBackRest's KeyValue tree.
func (run *infoRun) jsonValue(stanzas []infoStanzaOut) []any {
	list := make([]any, 0, len(stanzas))
	for _, s := range stanzas {
		var repos, dbs, archives, backups []any
		for _, r := range s.repos {
			repos = append(repos, map[string]any{
				"key": int64(r.key), "cipher": r.cipher,
				"status": map[string]any{"code": int64(r.code), "message": r.msg},
			})
		}
		for _, d := range s.db {
			dbs = append(dbs, map[string]any{
				"id": uint64(d.id), "repo-key": int64(d.repoKey), "system-id": d.systemID, "version": d.version,
			})
		}
		for _, a := range s.archive {
			archives = append(archives, map[string]any{
				"database": map[string]any{"id": uint64(a.dbID), "repo-key": int64(a.repoKey)},
				"id":       a.id, "min": infoNullable(a.min), "max": infoNullable(a.max),
			})
		}
		for _, b := range s.backups {
			backups = append(backups, run.backupValue(b))
		}
		stanza := map[string]any{
			"name":    s.name,
			"cipher":  s.cipher,
			"db":      infoList(dbs),
			"archive": infoList(archives),
			"repo":    infoList(repos),
			"backup":  infoList(backups),
			"status": map[string]any{
				"code": int64(s.code), "message": infoStatusMessage[s.code],
				"lock": map[string]any{"backup": map[string]any{"held": false}},
			},
		}
		if extras := infoExtrasValue(s); extras != nil {
			stanza[infoExtrasKey] = extras
		}
		list = append(list, stanza)
	}
	return list
}

func infoList(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func infoNullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// backupValue is backupListAdd() for JSON output.
func (run *infoRun) backupValue(bo infoBackupOut) map[string]any {
	b := bo.b
	v := map[string]any{
		"label": b.Label,
		"type":  string(b.Type),
		"prior": infoNullable(b.Prior),
		"archive": map[string]any{
			"start": infoNullable(b.ArchiveStart), "stop": infoNullable(b.ArchiveStop),
		},
		"backrest": map[string]any{"format": uint64(b.BackrestFormat), "version": b.BackrestVersion},
		"database": map[string]any{"id": uint64(b.DBID), "repo-key": int64(bo.repoKey)},
		"timestamp": map[string]any{
			"start": uint64(b.TimestampStart), "stop": uint64(b.TimestampStop),
		},
	}
	if b.Reference != nil {
		refs := make([]any, len(b.Reference))
		for i, r := range b.Reference {
			refs[i] = r
		}
		v["reference"] = refs
	} else {
		v["reference"] = nil
	}
	repoInfo := map[string]any{"delta": b.RepoSizeDelta}
	if b.RepoSizeMap == nil {
		repoInfo["size"] = b.RepoSize
	} else {
		repoInfo["size-map"] = *b.RepoSizeMap
		repoInfo["delta-map"] = nil
		if b.RepoSizeMapDelta != nil {
			repoInfo["delta-map"] = *b.RepoSizeMapDelta
		}
	}
	v["info"] = map[string]any{"size": b.Size, "delta": b.SizeDelta, "repository": repoInfo}
	if b.Error != nil {
		v["error"] = *b.Error
	}
	if b.LSNStart != "" && b.LSNStop != "" {
		v["lsn"] = map[string]any{"start": b.LSNStart, "stop": b.LSNStop}
	}
	if b.Annotation != nil {
		a := make(map[string]any, len(b.Annotation))
		for k, val := range b.Annotation {
			a[k] = val
		}
		v["annotation"] = a
	}
	if set := bo.set; set != nil {
		dbs := []any{}
		for _, d := range set.dbs {
			dbs = append(dbs, map[string]any{"name": d.name, "oid": uint64(d.oid)})
		}
		v["database-ref"] = dbs
		var links, ts []any
		for _, l := range set.links {
			links = append(links, map[string]any{"name": l.name, "destination": l.destination})
		}
		for _, t := range set.tablespaces {
			ts = append(ts, map[string]any{"name": t.name, "destination": t.destination, "oid": uint64(t.oid)})
		}
		v["link"], v["tablespace"] = nil, nil
		if links != nil {
			v["link"] = links
		}
		if ts != nil {
			v["tablespace"] = ts
		}
		if len(set.errorList) > 0 {
			el := make([]any, len(set.errorList))
			for i, e := range set.errorList {
				el[i] = e
			}
			v["error-list"] = el
			v["error"] = true
		}
	}
	return v
}

// infoJSON appends v as pgBackRest's jsonFromVar() writes it: object keys
// sorted, no spaces, only " \ and \n \r \t \b \f escaped.
func infoJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case string:
		b = append(b, '"')
		for i := 0; i < len(v); i++ {
			switch c := v[i]; c {
			case '"':
				b = append(b, `\"`...)
			case '\\':
				b = append(b, `\\`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			default:
				b = append(b, c)
			}
		}
		return append(b, '"')
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = infoJSON(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = infoJSON(b, k)
			b = append(b, ':')
			b = infoJSON(b, v[k])
		}
		return append(b, '}')
	}
	// The report holds only the types above.
	return append(b, "null"...)
}

// text renders the report as pgBackRest's text output.
func (run *infoRun) text(stanzas []infoStanzaOut) []byte {
	if len(stanzas) == 0 {
		return []byte("No stanzas exist in the repository.\n")
	}
	var w strings.Builder
	for i, s := range stanzas {
		if i > 0 {
			w.WriteString("\n")
		}
		fmt.Fprintf(&w, "stanza: %s\n    status: ", s.name)
		switch s.code {
		case infoCodeOK:
			w.WriteString("ok\n")
		case infoCodeMixed, infoCodePgMismatch, infoCodeOther:
			if s.code == infoCodeMixed {
				w.WriteString("mixed\n")
			} else {
				fmt.Fprintf(&w, "error (%s)\n", infoStatusMessage[s.code])
			}
			multi := len(s.repos) > 1
			spacer := "            "
			if multi {
				spacer = "               "
			}
			for _, r := range s.repos {
				if multi {
					fmt.Fprintf(&w, "        repo%d: ", r.key)
				}
				switch r.code {
				case infoCodeOK:
					w.WriteString("ok\n")
				case infoCodeOther:
					if multi {
						w.WriteString("error (other)\n")
					}
					fmt.Fprintf(&w, "%s%s\n", spacer, strings.ReplaceAll(r.msg, "\n", "\n"+spacer))
				default:
					fmt.Fprintf(&w, "error (%s)\n", r.msg)
				}
			}
		default:
			fmt.Fprintf(&w, "error (%s)\n", infoStatusMessage[s.code])
		}
		if s.code != infoCodeMissingStanzaPath {
			fmt.Fprintf(&w, "    cipher: %s\n", s.cipher)
			if s.cipher == infoCipherMixed {
				for _, r := range s.repos {
					fmt.Fprintf(&w, "        repo%d: %s\n", r.key, r.cipher)
				}
			}
		}
		if len(s.db) > 0 {
			run.textDB(&w, s)
		}
		infoTextExtras(&w, s)
	}
	return []byte(w.String())
}

// infoDBGroup gathers the databases with one system id and version over all
// repositories (pgBackRest's DbGroup).
type infoDBGroup struct {
	systemID   uint64
	version    string
	current    bool
	archiveMin string
	archiveMax string
	backups    []infoBackupOut
}

// textDB is formatTextDb().
func (run *infoRun) textDB(w *strings.Builder, s infoStanzaOut) {
	var groups []*infoDBGroup
	for _, d := range s.db {
		var g *infoDBGroup
		for _, cand := range groups {
			if cand.systemID == d.systemID && cand.version == d.version {
				g = cand
				break
			}
		}
		if g == nil {
			g = &infoDBGroup{systemID: d.systemID, version: d.version,
				current: s.curSystemID == d.systemID && s.curVersion == d.version}
			groups = append(groups, g)
		}
		for _, a := range s.archive {
			if a.dbID == d.id && a.repoKey == d.repoKey && a.min != "" {
				if g.archiveMin == "" || g.archiveMin > a.min {
					g.archiveMin = a.min
				}
				if g.archiveMax == "" || g.archiveMax < a.max {
					g.archiveMax = a.max
				}
			}
		}
	}
	lo, hi := 0, len(groups)
	for _, b := range s.backups {
		for _, d := range s.db {
			if b.b.DBID != d.id || b.repoKey != d.repoKey {
				continue
			}
			for gi, g := range groups {
				if g.systemID == d.systemID && g.version == d.version {
					g.backups = append(g.backups, b)
					if run.set != "" {
						lo, hi = gi, gi+1
					}
					break
				}
			}
			break
		}
	}
	var current strings.Builder
	current.WriteString("\n    db (current)")
	showCurrent := false
	for _, g := range groups[lo:hi] {
		switch {
		case g.current:
			run.textBackups(&current, g)
			showCurrent = true
		case g.archiveMin != "" || len(g.backups) > 0:
			w.WriteString("\n    db (prior)")
			run.textBackups(w, g)
		}
	}
	if showCurrent {
		w.WriteString(current.String())
	}
}

// textBackups is formatTextBackup().
func (run *infoRun) textBackups(w *strings.Builder, g *infoDBGroup) {
	fmt.Fprintf(w, "\n        wal archive min/max (%s): ", g.version)
	if g.archiveMin != "" {
		fmt.Fprintf(w, "%s/%s\n", g.archiveMin, g.archiveMax)
	} else {
		w.WriteString("none present\n")
	}
	for _, bo := range g.backups {
		b := bo.b
		fmt.Fprintf(w, "\n        %s backup: %s\n", b.Type, b.Label)
		fmt.Fprintf(w, "            timestamp start/stop: %s / %s\n", infoTime(b.TimestampStart), infoTime(b.TimestampStop))
		w.WriteString("            wal start/stop: ")
		if b.ArchiveStart != "" && b.ArchiveStop != "" {
			fmt.Fprintf(w, "%s / %s\n", b.ArchiveStart, b.ArchiveStop)
		} else {
			w.WriteString("n/a\n")
		}
		if run.set != "" && b.LSNStart != "" && b.LSNStop != "" {
			fmt.Fprintf(w, "            lsn start/stop: %s / %s\n", b.LSNStart, b.LSNStop)
		}
		fmt.Fprintf(w, "            database size: %s, database backup size: %s\n", infoSize(b.Size), infoSize(b.SizeDelta))
		fmt.Fprintf(w, "            repo%d: ", bo.repoKey)
		if b.RepoSizeMap == nil {
			fmt.Fprintf(w, "backup set size: %s, ", infoSize(b.RepoSize))
		}
		fmt.Fprintf(w, "backup size: %s\n", infoSize(b.RepoSizeDelta))
		if b.Reference != nil {
			fmt.Fprintf(w, "            backup reference list: %s\n", strings.Join(b.Reference, ", "))
		}
		backupError := b.Error != nil && *b.Error
		if set := bo.set; set != nil {
			w.WriteString("            database list:")
			if len(set.dbs) == 0 {
				w.WriteString(" none\n")
			} else {
				for i, d := range set.dbs {
					fmt.Fprintf(w, " %s (%d)", d.name, d.oid)
					if i != len(set.dbs)-1 {
						w.WriteString(",")
					}
				}
				w.WriteString("\n")
			}
			if len(set.links) > 0 {
				w.WriteString("            symlinks:\n")
				for i, l := range set.links {
					fmt.Fprintf(w, "                %s => %s", l.name, l.destination)
					if i != len(set.links)-1 {
						w.WriteString("\n")
					}
				}
				w.WriteString("\n")
			}
			if len(set.tablespaces) > 0 {
				w.WriteString("            tablespaces:\n")
				for i, t := range set.tablespaces {
					fmt.Fprintf(w, "                %s (%d) => %s", t.name, t.oid, t.destination)
					if i != len(set.tablespaces)-1 {
						w.WriteString("\n")
					}
				}
				w.WriteString("\n")
			}
			if len(set.errorList) > 0 {
				backupError = true
			}
		}
		if backupError {
			if bo.set != nil && len(bo.set.errorList) > 0 {
				fmt.Fprintf(w, "            error list: %s\n", strings.Join(bo.set.errorList, ", "))
			} else {
				w.WriteString("            error(s) detected during backup\n")
			}
		}
		if run.set != "" && b.Annotation != nil {
			keys := make([]string, 0, len(b.Annotation))
			for k := range b.Annotation {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			w.WriteString("            annotation(s)\n")
			for _, k := range keys {
				fmt.Fprintf(w, "                %s: %s\n", k, b.Annotation[k])
			}
		}
	}
}

// infoTime formats Unix seconds in the local time zone as pgBackRest's
// strftime("%Y-%m-%d %H:%M:%S", localtime_r()).
func infoTime(sec int64) string {
	return time.Unix(sec, 0).Local().Format("2006-01-02 15:04:05")
}

// infoSize is strSizeFormat().
func infoSize(size uint64) string {
	f := float64(size)
	unit := func(div float64, name string) string {
		if uint64(f/(div*102.4))%10 != 0 {
			return strconv.FormatFloat(f/(div*1024), 'f', 1, 64) + name
		}
		return strconv.FormatUint(size/uint64(div*1024), 10) + name
	}
	switch {
	case size < 1024:
		return strconv.FormatUint(size, 10) + "B"
	case size < 1024*1024:
		return unit(1, "KB")
	case size < 1024*1024*1024:
		return unit(1024, "MB")
	}
	return unit(1024*1024, "GB")
}

// pgsidecar's additions to pgBackRest's report (infoTextExtras). In text, they are lines
// after pgBackRest's lines of a stanza, set off by a blank line; in JSON, the
// key infoExtrasKey of the stanza's object (pgBackRest's parsers ignore
// unknown keys). Every line and key pgBackRest prints is unchanged and in its
// place; with nothing to add (no backup, no daemon, or --set) the report is
// pgBackRest's byte for byte.
//
//	recovery window (repo1): 2026-11-29 10:00:05+00 (backup 20261129-100000F) - 2026-11-29 12:34:56+00 (wal 000000010000000000000042)
//	backup running: repo1 incr (one-off) since 2026-11-29 12:00:01, 1.2GB of 3.4GB copied (35%)
//	backup queued: repo2 full (schedule), repo1 diff (one-off)
//
// The recovery window runs from the stop time (the consistency point) of the
// oldest backup of the current database to the newest WAL segment archived
// for it, whose time is its object's modification time: when it was
// archived, at or after the last transaction it holds. The times carry their
// UTC offset, as PostgreSQL prints a timestamptz, so that they can be given
// to restore --type=time --target as they are. Gaps in the archive are not
// looked for (verify does that).

// infoExtrasKey is the JSON key of pgsidecar's additions in a stanza.
const infoExtrasKey = "pgsidecar"

// infoDaemonTimeout bounds info's question to the daemon: info must not
// hang on a daemon that does not answer.
const infoDaemonTimeout = 500 * time.Millisecond

// infoDaemonStatus asks the daemon of cfg's stanza for its backup queue. It
// returns nil when no daemon answers in time (none runs, an older one that
// does not know op "status"): info then shows no queue.
func infoDaemonStatus(ctx context.Context, cfg *config.Config) *QueueStatus {
	socket, err := SocketPath(cfg)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, infoDaemonTimeout)
	defer cancel()
	resp, err := callDaemon(ctx, socket, request{Op: "status"}, infoDaemonTimeout)
	if err != nil || !resp.OK {
		return nil
	}
	return resp.Status
}

// infoWindow returns the recovery window of repository d, false when it has
// no backup of the current database.
func infoWindow(d *infoRepoData) (infoWindowOut, bool) {
	var oldest *repo.Backup
	for i := range d.backup.Backups {
		b := &d.backup.Backups[i]
		if b.DBID == d.backup.CurrentID && (oldest == nil || b.TimestampStop < oldest.TimestampStop) {
			oldest = b
		}
	}
	if oldest == nil {
		return infoWindowOut{}, false
	}
	w := infoWindowOut{repoKey: d.key, backup: oldest, walMax: d.walMax}
	// Segments compare by position (log and segment number) whatever their
	// timeline.
	if d.walMax != "" && (len(oldest.ArchiveStop) != repo.WALSegmentNameSize || d.walMax[8:] >= oldest.ArchiveStop[8:]) {
		w.wal, w.walTime = d.walMax, d.walMaxTime
	}
	return w, true
}

// infoTargetTime formats t in the local time zone as PostgreSQL prints a
// timestamptz ("2026-11-29 10:00:05+00", "... +05:30"), which restore
// --type=time accepts as --target.
func infoTargetTime(t time.Time) string {
	t = t.Local()
	if _, off := t.Zone(); off%3600 != 0 {
		return t.Format("2006-01-02 15:04:05-07:00")
	}
	return t.Format("2006-01-02 15:04:05-07")
}

// infoWindowText is the text of a recovery window after "recovery window (repoN): ".
func infoWindowText(w infoWindowOut) string {
	b := w.backup
	if w.wal == "" {
		have := "no WAL is archived"
		if w.walMax != "" {
			have = "the archive ends at " + w.walMax
		}
		return fmt.Sprintf("none: backup %s needs WAL up to %s, %s", b.Label, b.ArchiveStop, have)
	}
	return fmt.Sprintf("%s (backup %s) - %s (wal %s)",
		infoTargetTime(time.Unix(b.TimestampStop, 0)), b.Label, infoTargetTime(w.walTime), w.wal)
}

// infoJobSource is the source of job j, with the count of coalesced requests.
func infoJobSource(j JobStatus) string {
	if j.Requests > 1 {
		return fmt.Sprintf("%s, %d requests", j.Source, j.Requests)
	}
	return j.Source
}

// infoRunningText is the text of the running backup after "backup running: ".
func infoRunningText(j JobStatus) string {
	since := j.Started
	if since.IsZero() {
		since = j.Submitted
	}
	s := fmt.Sprintf("repo%d %s (%s) since %s, ", j.Repo, j.Type, infoJobSource(j), infoTime(since.Unix()))
	switch {
	case j.State == JobWaitingLease:
		return s + fmt.Sprintf("waiting for the repo%d lease", j.Repo)
	case j.Total == 0:
		return s + "size not known yet"
	}
	return s + fmt.Sprintf("%s of %s copied (%d%%)", infoSize(j.Done), infoSize(j.Total), min(j.Done*100/j.Total, 100))
}

// infoTextExtras writes pgsidecar's lines of stanza s, if any.
func infoTextExtras(w *strings.Builder, s infoStanzaOut) {
	var lines []string
	for _, win := range s.windows {
		lines = append(lines, fmt.Sprintf("recovery window (repo%d): %s", win.repoKey, infoWindowText(win)))
	}
	if st := s.daemon; st != nil {
		if st.Running != nil {
			lines = append(lines, "backup running: "+infoRunningText(*st.Running))
		}
		if len(st.Queued) > 0 {
			queued := make([]string, len(st.Queued))
			for i, j := range st.Queued {
				queued[i] = fmt.Sprintf("repo%d %s (%s)", j.Repo, j.Type, infoJobSource(j))
			}
			lines = append(lines, "backup queued: "+strings.Join(queued, ", "))
		}
	}
	if len(lines) == 0 {
		return
	}
	w.WriteString("\n")
	for _, l := range lines {
		w.WriteString("    " + l + "\n")
	}
}

// infoUnix is t as Unix seconds, null when zero.
func infoUnix(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// infoJobValue is job j in JSON.
func infoJobValue(j JobStatus, running bool) map[string]any {
	v := map[string]any{
		"id": j.ID, "repo-key": int64(j.Repo), "type": j.Type, "source": j.Source, "state": j.State,
		"requests": int64(j.Requests), "submitted": infoUnix(j.Submitted),
	}
	if running {
		v["started"] = infoUnix(j.Started)
		v["copied"], v["total"] = j.Done, j.Total
	}
	return v
}

// infoExtrasValue is pgsidecar's additions to stanza s in JSON, nil when
// there are none:
//
//	{"recovery-window":[{"repo-key":1,"start":{"backup":"...","time":1764410405,"wal":"..."},"stop":{"time":1764419696,"wal":"..."}}],
//	 "running":{"id":3,"repo-key":1,"type":"incr","source":"one-off","state":"running","requests":1,
//	            "submitted":1764417600,"started":1764417601,"copied":1288490188,"total":3650722201},
//	 "queued":[{"id":4,"repo-key":2,"type":"full","source":"schedule","state":"queued","requests":1,"submitted":1764417700}]}
//
// Times are Unix seconds as in pgBackRest's report; stop is null when the
// archive does not reach the backup's stop segment.
func infoExtrasValue(s infoStanzaOut) map[string]any {
	v := map[string]any{}
	if len(s.windows) > 0 {
		windows := make([]any, len(s.windows))
		for i, w := range s.windows {
			var stop any
			if w.wal != "" {
				stop = map[string]any{"time": w.walTime.Unix(), "wal": w.wal}
			}
			windows[i] = map[string]any{
				"repo-key": int64(w.repoKey),
				"start": map[string]any{
					"backup": w.backup.Label, "time": w.backup.TimestampStop, "wal": infoNullable(w.backup.ArchiveStop),
				},
				"stop": stop,
			}
		}
		v["recovery-window"] = windows
	}
	if st := s.daemon; st != nil {
		if st.Running != nil {
			v["running"] = infoJobValue(*st.Running, true)
		}
		if len(st.Queued) > 0 {
			queued := make([]any, len(st.Queued))
			for i, j := range st.Queued {
				queued[i] = infoJobValue(j, false)
			}
			v["queued"] = queued
		}
	}
	if len(v) == 0 {
		return nil
	}
	return v
}
