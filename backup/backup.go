package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/pg"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// advisoryLockID is the advisory lock pgBackRest takes so that only one backup of a
// cluster runs at a time; pgsidecar takes the same one, so it also excludes pgBackRest.
const advisoryLockID = 12340078987004321

// ErrArchiveTimeout reports that the WAL a backup needs did not reach the archive within
// archive-timeout.
var ErrArchiveTimeout = errors.New("WAL segment was not archived before the archive-timeout")

// ErrMismatch reports that the cluster is not the stanza's current database.
var ErrMismatch = errors.New("database does not match the stanza")

// ErrLocked reports that another backup of the cluster is running.
var ErrLocked = errors.New("unable to acquire the backup advisory lock: is another backup already running on this cluster?")

// ErrConnect reports that the cluster could not be connected to.
var ErrConnect = errors.New("unable to connect to the cluster")

// Options configures one backup.
type Options struct {
	// Repo is the stanza in the repository written to.
	Repo *repo.Repository
	// PgPath is the data directory (pg1-path).
	PgPath string
	// ConnConfig connects to the cluster as a superuser (or a user allowed to run
	// pg_backup_start/stop and read pg_database).
	ConnConfig *pgx.ConnConfig
	// Type is full, diff or incr. A diff or incr without a prior backup becomes full.
	Type repo.BackupType
	// StartFast asks for an immediate checkpoint.
	StartFast bool
	// ProcessMax is the number of files copied concurrently (at least 1).
	ProcessMax int
	// CompressType and CompressLevel compress the files of a full backup (diff and incr
	// backups keep their full backup's).
	CompressType  repo.CompressType
	CompressLevel int
	// ArchiveCheck waits, up to ArchiveTimeout, for every WAL segment from the backup's
	// start to its stop to be in the repository's archive.
	ArchiveCheck   bool
	ArchiveTimeout time.Duration
	// ChecksumPage is checksum-page: verify page checksums of relation files while
	// copying. nil follows the cluster's data_checksums; a diff or incr keeps its prior
	// backup's setting, as pgBackRest does.
	ChecksumPage *bool
	// Exclude is the exclude option (see WalkOptions).
	Exclude []string
	// Annotation is stored in the manifest and backup.info; nil for none.
	Annotation map[string]string
	// Bundle is repo-bundle: files of at most BundleLimit bytes (repo-bundle-limit,
	// DefaultBundleLimit when 0) are stored together in bundles of up to BundleSize
	// bytes (repo-bundle-size, DefaultBundleSize when 0) and zero-length files are not
	// stored, as pgBackRest 2.45 does (see the bundling notes in bundle.go).
	Bundle                  bool
	BundleSize, BundleLimit uint64
	// BufferSize is recorded as option-buffer-size.
	BufferSize uint32
	// Log receives progress; nil discards it.
	Log *zap.Logger
	// Now is the clock (time.Now when nil); labels are formatted in its location.
	Now func() time.Time
	// Progress, when set, is called from the copying goroutines with the bytes of
	// the files copied so far (their sizes from the walk) and the total to copy; calls
	// may arrive out of order, the largest done is the current one.
	Progress func(done, total uint64)
}

// Result describes a completed backup.
type Result struct {
	// Label is the new backup's label and Type its type (full when a diff/incr had no
	// prior backup).
	Label string
	Type  repo.BackupType
	// Manifest is the saved manifest.
	Manifest *repo.Manifest
	// Copied and RepoCopied are the bytes read from the cluster and written to the
	// repository by this backup (referenced files excluded).
	Copied, RepoCopied uint64
}

// session is the database connection of a backup.
type session struct {
	conn    *pgx.Conn
	version uint32 // server_version_num
}

func (s *session) queryRow(ctx context.Context, sql string, dst []any, args ...any) error {
	if err := s.conn.QueryRow(ctx, sql, args...).Scan(dst...); err != nil {
		return fmt.Errorf("query %q: %w", sql, err)
	}
	return nil
}

// Run takes an online backup of the cluster into o.Repo, following pgBackRest 2.45's
// procedure (without block incremental, archive-copy, resume or expire):
// pg_backup_start, walk, manifest copy, parallel copy (bundled with o.Bundle) with page
// checksum verification, pg_backup_stop, backup_label/tablespace_map (always stored on
// their own), archive check, manifest, backup.history, backup.info.
func Run(ctx context.Context, o Options) (*Result, error) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	rs := o.Repo
	bi, err := rs.LoadBackupInfo(ctx)
	if err != nil {
		return nil, err
	}
	ai, err := rs.LoadArchiveInfo(ctx)
	if err != nil {
		return nil, err
	}
	hist, ok := bi.Current()
	if !ok {
		return nil, fmt.Errorf("backup.info has no current database")
	}
	archiveID, err := ai.ArchiveIDMatch(hist.ID, hist.Version, hist.SystemID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	version, err := pg.ReadVersion(o.PgPath)
	if err != nil {
		return nil, err
	}
	control, err := pg.ReadControl(o.PgPath)
	if err != nil {
		return nil, err
	}
	if version != hist.Version || control.SystemID != hist.SystemID {
		return nil, fmt.Errorf("%w: database version %s, system-id %d; stanza version %s, system-id %d (did an upgrade occur? then run stanza-upgrade)",
			ErrMismatch, version, control.SystemID, hist.Version, hist.SystemID)
	}
	start := now()

	// The prior backup of a diff (the newest full) or incr (the newest backup).
	typ := o.Type
	var prior *repo.Manifest
	if typ != repo.BackupFull {
		label := ""
		for i := len(bi.Backups) - 1; i >= 0 && label == ""; i-- {
			b := bi.Backups[i]
			if b.DBID == hist.ID && (typ == repo.BackupIncr || b.Type == repo.BackupFull) {
				label = b.Label
			}
		}
		if label == "" {
			log.Warn("no prior backup exists, backup type changed to full", zap.String("type", string(typ)))
			typ = repo.BackupFull
		} else if prior, err = rs.LoadManifest(ctx, label, bi.CipherPass); err != nil {
			return nil, err
		}
	}
	latest, err := latestLabel(ctx, rs, bi)
	if err != nil {
		return nil, err
	}
	priorLabel := ""
	if prior != nil {
		priorLabel = prior.Label
	}
	label, err := repo.NextBackupLabel(typ, priorLabel, start, latest)
	if err != nil {
		return nil, err
	}

	conn, err := pgx.ConnectConfig(ctx, o.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	s := &session{conn: conn}
	if err := s.setup(ctx, version); err != nil {
		return nil, err
	}
	m := &repo.Manifest{
		BackrestVersion: repo.WriterVersion,
		Label:           label,
		Type:            typ,
		TimestampStart:  start.Unix(),
		Annotation:      o.Annotation,
		DB: repo.ManifestDB{
			ID: hist.ID, SystemID: hist.SystemID, Version: hist.Version,
			CatalogVersion: hist.CatalogVersion, ControlVersion: hist.ControlVersion,
		},
	}
	if err := setOptions(m, o); err != nil {
		return nil, err
	}
	if rs.Encrypted() {
		if m.CipherPass, err = cipher.NewPassphrase(); err != nil {
			return nil, err
		}
	}
	log.Info("execute non-exclusive backup start", zap.String("label", label), zap.Bool("start-fast", o.StartFast))
	if err := s.start(ctx, m, o.StartFast); err != nil {
		return nil, err
	}
	checksumPage, err := s.checksumPage(ctx, o.ChecksumPage, prior, log)
	if err != nil {
		return nil, err
	}
	m.Options.ChecksumPage = &checksumPage
	databases, tablespaces, err := s.catalog(ctx)
	if err != nil {
		return nil, err
	}
	m.Databases = databases
	log.Info("backup start", zap.String("lsn", m.LSNStart), zap.String("wal", m.ArchiveStart))

	// Wait for the remainder of the second so that any file changed from now on has a
	// later timestamp than the ones the walk records.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(now().Truncate(time.Second).Add(time.Second))):
	}
	walked, err := Walk(ctx, WalkOptions{
		PgPath: o.PgPath, TablespaceID: TablespaceID(hist.Version, hist.CatalogVersion), Online: true, ChecksumPage: checksumPage,
		Exclude: o.Exclude, Tablespaces: tablespaces, Log: log,
	})
	if err != nil {
		return nil, err
	}
	m.Files, m.Paths, m.Links, m.Targets = walked.Files, walked.Paths, walked.Links, walked.Targets
	var verify map[string]bool
	if prior != nil {
		verify = ApplyPrior(m, prior, log)
	}
	m.TimestampCopyStart = now().Unix()
	manifestPass := bi.CipherPass
	if err := saveManifest(ctx, rs, m, manifestPass, false); err != nil {
		return nil, err
	}

	c, err := newCopier(rs, m, o.PgPath, log)
	if err != nil {
		return nil, err
	}
	c.progress = o.Progress
	if o.BundleSize != 0 {
		c.bundleSize = o.BundleSize
	}
	if o.BundleLimit != 0 {
		c.bundleLimit = o.BundleLimit
	}
	if err := c.copyAll(ctx, m, verify, o.ProcessMax); err != nil {
		return nil, err
	}

	labelFile, spcMap, err := s.stop(ctx, m)
	if err != nil {
		return nil, err
	}
	stop := now()
	m.TimestampStop = stop.Unix()
	log.Info("backup stop", zap.String("lsn", m.LSNStop), zap.String("wal", m.ArchiveStop))
	base, _ := m.Path(repo.TargetPGData)
	for _, x := range []struct{ name, content string }{{"backup_label", labelFile}, {"tablespace_map", spcMap}} {
		if strings.TrimSpace(x.content) == "" {
			continue
		}
		f := repo.ManifestFile{
			Name: repo.TargetPGData + "/" + x.name, Timestamp: stop.Unix(),
			Mode: base.Mode & 0o644, User: base.User, Group: base.Group,
		}
		if err := c.storeBytes(ctx, &f, []byte(x.content)); err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
	}

	if o.ArchiveCheck {
		segSize, err := s.walSegmentSize(ctx)
		if err != nil {
			return nil, err
		}
		if err := waitArchived(ctx, rs, archiveID, m.ArchiveStart, m.ArchiveStop, segSize, o.ArchiveTimeout, log); err != nil {
			return nil, err
		}
	}

	// Complete: manifest (copy, then main), history, backup.info.
	if err := saveManifest(ctx, rs, m, manifestPass, true); err != nil {
		return nil, err
	}
	bk, err := repo.BackupFromManifest(m)
	if err != nil {
		return nil, err
	}
	bi.Add(bk)
	if err := rs.SaveBackupInfo(ctx, bi); err != nil {
		return nil, err
	}
	res := &Result{Label: label, Type: typ, Manifest: m, Copied: bk.SizeDelta, RepoCopied: bk.RepoSizeDelta}
	log.Info("backup complete", zap.String("label", label), zap.String("type", string(typ)),
		zap.Uint64("size", bk.Size), zap.Uint64("copied", bk.SizeDelta), zap.Uint64("repo-copied", bk.RepoSizeDelta))
	return res, nil
}

// setOptions fills [backup:option] from o.
func setOptions(m *repo.Manifest, o Options) error {
	ct := o.CompressType
	if ct == "" {
		ct = repo.CompressGz
	}
	codec, err := ct.Codec()
	if err != nil {
		return err
	}
	level := o.CompressLevel
	if level == 0 && codec != compress.None {
		level = codec.DefaultLevel()
	}
	u32 := func(v uint32) *uint32 { return &v }
	f, t := false, true
	processMax := o.ProcessMax
	if processMax < 1 {
		processMax = 1
	}
	bufferSize := o.BufferSize
	if bufferSize == 0 {
		bufferSize = 1 << 20
	}
	m.Bundle = o.Bundle
	m.Options = repo.ManifestOptions{
		ArchiveCheck: o.ArchiveCheck, BackupStandby: &f, BufferSize: u32(bufferSize), ChecksumPage: &f,
		CompressType: ct, CompressLevel: u32(uint32(level)), CompressLevelNetwork: u32(3),
		Delta: &f, Online: t, ProcessMax: u32(uint32(processMax)),
	}
	return nil
}

// newCopier prepares the copy of m's files (after ApplyPrior, whose compression and
// passphrase it uses), bundled when m.Bundle with the default bundle size and limit.
func newCopier(rs *repo.Repository, m *repo.Manifest, pgPath string, log *zap.Logger) (*copier, error) {
	if log == nil {
		log = zap.NewNop()
	}
	codec, err := m.Options.CompressType.Codec()
	if err != nil {
		return nil, err
	}
	ext, err := m.Options.CompressType.Ext()
	if err != nil {
		return nil, err
	}
	level := 0
	if m.Options.CompressLevel != nil {
		level = int(*m.Options.CompressLevel)
	}
	if codec != compress.None {
		if lo, hi := codec.Levels(); level < lo || level > hi {
			return nil, fmt.Errorf("compress-level %d is out of range %d-%d for %s", level, lo, hi, codec)
		}
	}
	label := m.Label
	return &copier{
		store: rs.Store(), prefix: rs.BackupKey(m.Label + "/"), ext: ext, codec: codec, level: level,
		pass: m.CipherPass, targets: newTargetDirs(pgPath), log: log,
		bundle: m.Bundle, bundleSize: DefaultBundleSize, bundleLimit: DefaultBundleLimit,
		bundleKey: func(id uint64) string { return rs.BackupKey(repo.BundlePath(label, id)) },
	}, nil
}

// storeBytes stores content as file f (backup_label, tablespace_map).
func (c *copier) storeBytes(ctx context.Context, f *repo.ManifestFile, content []byte) error {
	res, err := c.copyFile(ctx, bytes.NewReader(content), c.prefix+f.Name+c.ext, uint64(len(content)), newWorker(), nil)
	if err != nil {
		return err
	}
	f.Size, f.Checksum, f.RepoSize, f.RepoChecksum = res.size, res.sum, res.repoSize, res.repoSum
	if c.pass == "" && c.codec == compress.None {
		f.RepoChecksum = ""
	}
	return nil
}

// saveManifest writes backup.manifest.copy (and, when final, backup.manifest with the
// same bytes), encrypted with backup.info's passphrase; when final it also writes
// backup.history/<YYYY>/<label>.manifest.gz.
func saveManifest(ctx context.Context, rs *repo.Repository, m *repo.Manifest, pass string, final bool) error {
	data, err := m.Save()
	if err != nil {
		return err
	}
	plain := data
	if pass != "" {
		if data, err = cipher.Encrypt(data, []byte(pass)); err != nil {
			return fmt.Errorf("encrypt manifest: %w", err)
		}
	}
	key := rs.BackupKey(repo.BackupManifestPath(m.Label))
	if err := rs.Store().Put(ctx, key+repo.CopyExt, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("write %s: %w", key+repo.CopyExt, err)
	}
	if !final {
		return nil
	}
	if err := rs.Store().Put(ctx, key, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	var gz bytes.Buffer
	w, err := compress.NewWriter(&gz, compress.Gz, 9)
	if err != nil {
		return err
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("compress manifest: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("compress manifest: %w", err)
	}
	hdata := gz.Bytes()
	if pass != "" {
		if hdata, err = cipher.Encrypt(hdata, []byte(pass)); err != nil {
			return fmt.Errorf("encrypt manifest: %w", err)
		}
	}
	hp, err := repo.HistoryManifestPath(m.Label)
	if err != nil {
		return err
	}
	if err := rs.Store().Put(ctx, rs.BackupKey(hp), bytes.NewReader(hdata)); err != nil {
		return fmt.Errorf("write %s: %w", hp, err)
	}
	return nil
}

// latestLabel returns the newest label of backup.info and backup.history.
func latestLabel(ctx context.Context, rs *repo.Repository, bi *repo.BackupInfo) (string, error) {
	var names []string
	for _, b := range bi.Backups {
		names = append(names, b.Label)
	}
	err := rs.Store().List(ctx, rs.BackupKey(repo.HistoryDir+"/"), func(oi storage.ObjectInfo) error {
		if l, ok := repo.ParseHistoryManifestName(path.Base(oi.Key)); ok {
			names = append(names, l)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list backup history: %w", err)
	}
	return repo.LatestBackupLabel(names...), nil
}

// setup checks the server and sets the session up as pgBackRest does.
func (s *session) setup(ctx context.Context, version string) error {
	var num int64
	if err := s.queryRow(ctx, "select current_setting('server_version_num')::int8", []any{&num}); err != nil {
		return err
	}
	s.version = uint32(num)
	want, err := repo.PgVersionNum(version)
	if err != nil {
		return err
	}
	if s.version/10000 != want/10000 {
		return fmt.Errorf("%w: server version %d does not match PG_VERSION %s (is pg1-port/pg1-socket-path the cluster at pg1-path?)", ErrMismatch, s.version, version)
	}
	if s.version < 130000 {
		return fmt.Errorf("PostgreSQL %d is not supported by pgsidecar backup (13 or later)", s.version)
	}
	for _, q := range []string{"set search_path = 'pg_catalog'", "set client_encoding = 'UTF8'", "set max_parallel_workers_per_gather = 0"} {
		if _, err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var recovery, locked bool
	if err := s.queryRow(ctx, "select pg_is_in_recovery()", []any{&recovery}); err != nil {
		return err
	}
	if recovery {
		return fmt.Errorf("the cluster is in recovery: backup from a standby is not supported by pgsidecar")
	}
	if err := s.queryRow(ctx, "select pg_try_advisory_lock("+strconv.FormatInt(advisoryLockID, 10)+"::bigint)", []any{&locked}); err != nil {
		return err
	}
	if !locked {
		return ErrLocked
	}
	return nil
}

// start runs pg_backup_start (pg_start_backup before 15) in non-exclusive mode.
func (s *session) start(ctx context.Context, m *repo.Manifest, fast bool) error {
	label := "pgsidecar backup " + m.Label
	fn := "pg_backup_start($1, $2)"
	if s.version < 150000 {
		fn = "pg_start_backup($1, $2, false)"
	}
	return s.queryRow(ctx, "select lsn::text, pg_walfile_name(lsn)::text from "+fn+" as lsn",
		[]any{&m.LSNStart, &m.ArchiveStart}, label, fast)
}

// stop runs pg_backup_stop (pg_stop_backup before 15) without waiting for the archive
// (the archive check does that), recording the stop LSN and segment, and returns the
// backup_label and tablespace_map contents.
func (s *session) stop(ctx context.Context, m *repo.Manifest) (string, string, error) {
	fn := "pg_backup_stop(false)"
	if s.version < 150000 {
		fn = "pg_stop_backup(false, false)"
	}
	var labelFile, spcMap *string
	if err := s.queryRow(ctx, "select lsn::text, pg_walfile_name(lsn)::text, labelfile::text, spcmapfile::text from "+fn,
		[]any{&m.LSNStop, &m.ArchiveStop, &labelFile, &spcMap}); err != nil {
		return "", "", err
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	return deref(labelFile), deref(spcMap), nil
}

// checksumPage decides whether page checksums are verified: as asked, or as the cluster
// has data checksums when not asked; never without data checksums; like the prior
// backup for a diff or incr.
func (s *session) checksumPage(ctx context.Context, asked *bool, prior *repo.Manifest, log *zap.Logger) (bool, error) {
	var setting string
	if err := s.queryRow(ctx, "select current_setting('data_checksums')", []any{&setting}); err != nil {
		return false, err
	}
	on := setting == "on"
	if asked != nil {
		if *asked && !on {
			log.Warn("checksum-page option set to true but checksums are not enabled on the cluster, resetting to false")
		}
		on = on && *asked
	}
	if prior != nil && prior.Options.ChecksumPage != nil && *prior.Options.ChecksumPage != on {
		log.Warn("diff/incr backup cannot alter 'checksum-page' option, reset to the prior backup's value",
			zap.Bool("checksum-page", *prior.Options.ChecksumPage), zap.String("prior", prior.Label))
		on = *prior.Options.ChecksumPage
	}
	return on, nil
}

// catalog returns the databases and the tablespace names.
func (s *session) catalog(ctx context.Context) ([]repo.ManifestDatabase, map[uint32]string, error) {
	q := "select oid::int8, datname::text, datlastsysoid::int8 from pg_database"
	if s.version >= 150000 {
		q = "select oid::int8, datname::text, (select oid::int8 from pg_database where datname = 'template0') from pg_database"
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("list databases: %w", err)
	}
	var dbs []repo.ManifestDatabase
	for rows.Next() {
		var oid, last int64
		var name string
		if err := rows.Scan(&oid, &name, &last); err != nil {
			return nil, nil, fmt.Errorf("list databases: %w", err)
		}
		dbs = append(dbs, repo.ManifestDatabase{Name: name, ID: uint32(oid), LastSystemID: uint32(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list databases: %w", err)
	}
	rows, err = s.conn.Query(ctx, "select oid::int8, spcname::text from pg_tablespace")
	if err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}
	ts := map[uint32]string{}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, nil, fmt.Errorf("list tablespaces: %w", err)
		}
		ts[uint32(oid)] = name
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return dbs, ts, nil
}

// walSegmentSize returns wal_segment_size in bytes.
func (s *session) walSegmentSize(ctx context.Context) (uint64, error) {
	var size int64
	if err := s.queryRow(ctx, "select setting::int8 from pg_settings where name = 'wal_segment_size'", []any{&size}); err != nil {
		return 0, err
	}
	if size <= 0 {
		return 0, fmt.Errorf("invalid wal_segment_size %d", size)
	}
	return uint64(size), nil
}
