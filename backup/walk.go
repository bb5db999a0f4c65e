package backup

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/repo"
)

// Manifest names the walk gives special meaning to.
const (
	pgDataTblspc = repo.TargetPGData + "/" + repo.TargetPGTblspc // pg_data/pg_tblspc
	pgDataWAL    = repo.TargetPGData + "/pg_wal"
)

// relationExp is pgBackRest's RELATION_EXP: a relation file (main, fsm or vm fork, any
// segment); it never matches an _init fork.
const relationExp = `[0-9]+(_(fsm|vm)){0,1}(\.[0-9]+){0,1}`

// tempRelation matches temporary relation files (t<backend>_<relfilenode>...).
var tempRelation = regexp.MustCompile(`^t[0-9]+_` + relationExp + `$`)

// internalInitSuffix matches what may follow pg_internal.init in a leftover temp file.
var internalInitSuffix = regexp.MustCompile(`^\.[0-9]+$`)

// skipContentDirs are the directories of the data directory root whose contents are
// never backed up (they are reset or useless after recovery); the directories are kept.
var skipContentDirs = []string{"pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"}

// skipRootFiles are the files of the data directory root pgBackRest 2.45 never backs up
// for PostgreSQL 13 and later.
var skipRootFiles = []string{
	"recovery.signal", "standby.signal", "postgresql.auto.conf.tmp", "backup_label", "backup_label.old",
	"backup_manifest", "backup_manifest.tmp", "postmaster.opts", "postmaster.pid",
}

// WalkOptions configures Walk.
type WalkOptions struct {
	// PgPath is the data directory (pg1-path).
	PgPath string
	// TablespaceID is the name of the per-version subdirectory PostgreSQL creates in every
	// tablespace, "PG_<version>_<catalog version>" (see TablespaceID).
	TablespaceID string
	// Online excludes the contents of pg_wal and pg_wal/archive_status.
	Online bool
	// ChecksumPage marks the relation files of database directories (all files there but
	// pg_filenode.map, PG_VERSION and global/pg_control) for page checksum verification.
	ChecksumPage bool
	// Exclude is the exclude option: "path/" excludes a directory's contents, anything
	// else the named file, link or directory (relative to the data directory).
	Exclude []string
	// Tablespaces maps tablespace oids to names (from pg_tablespace); a tablespace link
	// missing from it is an error when it is not nil. nil names them "ts<oid>".
	Tablespaces map[uint32]string
	// Log receives the exclusion and special-file messages; nil discards them.
	Log *zap.Logger
}

// Walked is what a walk found: the manifest's file, path, link and target lists (the
// order is the walk's, sorted by name within each directory).
type Walked struct {
	// Files are the regular files, with size, timestamp, owner, mode and whether their
	// page checksums are to be verified.
	Files []repo.ManifestFile
	// Paths are the directories, "pg_data" first.
	Paths []repo.ManifestPath
	// Links are the symlinks (tablespaces and other links).
	Links []repo.ManifestLink
	// Targets are pg_data and one per link.
	Targets []repo.ManifestTarget
}

// TablespaceID returns the tablespace subdirectory name of a PostgreSQL version
// ("15") and catalog version: "PG_15_202209061".
func TablespaceID(pgVersion string, catalogVersion uint32) string {
	return "PG_" + pgVersion + "_" + strconv.FormatUint(uint64(catalogVersion), 10)
}

// walker holds the state of one walk.
type walker struct {
	ctx            context.Context
	opts           WalkOptions
	log            *zap.Logger
	dbPath         *regexp.Regexp
	excludeSingle  map[string]bool
	excludeContent map[string]bool
	users, groups  map[uint32]string
	out            Walked
}

// Walk lists the data directory and its tablespaces as pgBackRest's manifestNewBuild()
// does, with its exclusions: names starting with pgsql_tmp; the contents of pg_dynshmem,
// pg_notify, pg_replslot, pg_serial, pg_snapshots, pg_stat_tmp and pg_subtrans; when
// online the contents of pg_wal and pg_wal/archive_status; root files postmaster.pid,
// postmaster.opts, backup_label(.old), recovery/standby.signal, backup_manifest(.tmp),
// postgresql.auto.conf.tmp; pg_internal.init and temporary relations in database
// directories; every fork but _init of unlogged relations; the user's excludes; special
// files (with a warning).
func Walk(ctx context.Context, opts WalkOptions) (*Walked, error) {
	w := &walker{
		ctx: ctx, opts: opts, log: opts.Log,
		excludeSingle: map[string]bool{}, excludeContent: map[string]bool{},
		users: map[uint32]string{}, groups: map[uint32]string{},
		dbPath: regexp.MustCompile(`^` + dbPathExp(opts.TablespaceID) + `$`),
	}
	if w.log == nil {
		w.log = zap.NewNop()
	}
	for _, e := range opts.Exclude {
		if c, ok := strings.CutSuffix(e, "/"); ok {
			w.excludeContent[repo.TargetPGData+"/"+c] = true
		} else {
			w.excludeSingle[repo.TargetPGData+"/"+e] = true
		}
	}
	fi, err := os.Stat(opts.PgPath)
	if err != nil {
		return nil, fmt.Errorf("walk data directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("walk data directory: %s is not a directory", opts.PgPath)
	}
	u, g := w.owner(fi)
	w.out.Paths = append(w.out.Paths, repo.ManifestPath{Name: repo.TargetPGData, Mode: uint32(fi.Mode().Perm()), User: u, Group: g})
	w.out.Targets = append(w.out.Targets, repo.ManifestTarget{Name: repo.TargetPGData, Path: opts.PgPath, Type: repo.TargetPath})
	if err := w.dir(repo.TargetPGData, opts.PgPath, false); err != nil {
		return nil, err
	}
	w.out.Files = removeUnlogged(w.out.Files, opts.TablespaceID)
	return &w.out, nil
}

// dbPathExp is pgBackRest's DB_PATH_EXP: the manifest names of database directories.
func dbPathExp(tablespaceID string) string {
	return `(` + repo.TargetPGData + `/(global|base/[0-9]+)|` + repo.TargetPGTblspc + `/[0-9]+/` + regexp.QuoteMeta(tablespaceID) + `/[0-9]+)`
}

// dir visits the entries of directory dirPath, whose manifest name is name.
func (w *walker) dir(name, dirPath string, dbPath bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dirPath)
	if err != nil {
		return fmt.Errorf("walk data directory: %w", err)
	}
	for _, e := range entries { // sorted by name
		fi, err := os.Lstat(filepath.Join(dirPath, e.Name()))
		if err != nil {
			if os.IsNotExist(err) { // removed by the database meanwhile
				continue
			}
			return fmt.Errorf("walk data directory: %w", err)
		}
		if err := w.visit(name, dirPath, dbPath, e.Name(), fi); err != nil {
			return err
		}
	}
	return nil
}

// owner returns the user and group names of fi ("" when unmapped).
func (w *walker) owner(fi fs.FileInfo) (string, string) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", ""
	}
	u, ok := w.users[st.Uid]
	if !ok {
		if x, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
			u = x.Username
		}
		w.users[st.Uid] = u
	}
	g, ok := w.groups[st.Gid]
	if !ok {
		if x, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10)); err == nil {
			g = x.Name
		}
		w.groups[st.Gid] = g
	}
	return u, g
}

// skipFile reports whether file name in directory parent (a manifest name) is excluded
// by pgBackRest's built-in rules.
func skipFile(parent, name string, dbPath, online bool) bool {
	if dbPath && strings.HasPrefix(name, "pg_internal.init") {
		rest := name[len("pg_internal.init"):]
		if rest == "" || internalInitSuffix.MatchString(rest) {
			return true
		}
	}
	if parent == repo.TargetPGData && slices.Contains(skipRootFiles, name) {
		return true
	}
	if online && parent == pgDataWAL {
		return true
	}
	return dbPath && tempRelation.MatchString(name)
}

// skipContent reports whether the contents of directory name in parent are excluded by
// pgBackRest's built-in rules.
func skipContent(parent, name string, online bool) bool {
	if parent == repo.TargetPGData && slices.Contains(skipContentDirs, name) {
		return true
	}
	return online && parent == pgDataWAL && name == "archive_status"
}

// visit adds entry name of directory dirPath (manifest name parent).
func (w *walker) visit(parent, dirPath string, dbPath bool, name string, fi fs.FileInfo) error {
	if strings.HasPrefix(name, "pgsql_tmp") {
		return nil
	}
	mname := parent + "/" + name
	if w.excludeSingle[mname] {
		w.log.Info("exclude from backup using exclusion", zap.String("path", filepath.Join(dirPath, name)))
		return nil
	}
	u, g := w.owner(fi)
	switch {
	case fi.IsDir():
		if parent == pgDataTblspc {
			return fmt.Errorf("walk data directory: '%s' is not a symlink - pg_tblspc should contain only symlinks", mname)
		}
		w.out.Paths = append(w.out.Paths, repo.ManifestPath{Name: mname, Mode: uint32(fi.Mode().Perm()), User: u, Group: g})
		if w.excludeContent[mname] {
			w.log.Info("exclude contents from backup using exclusion", zap.String("path", filepath.Join(dirPath, name)))
			return nil
		}
		if skipContent(parent, name, w.opts.Online) {
			return nil
		}
		return w.dir(mname, filepath.Join(dirPath, name), w.dbPath.MatchString(mname))
	case fi.Mode().IsRegular():
		if parent == pgDataTblspc {
			return fmt.Errorf("walk data directory: '%s' is not a symlink - pg_tblspc should contain only symlinks", mname)
		}
		if skipFile(parent, name, dbPath, w.opts.Online) {
			return nil
		}
		w.out.Files = append(w.out.Files, repo.ManifestFile{
			Name: mname, Size: uint64(fi.Size()), RepoSize: uint64(fi.Size()), Timestamp: fi.ModTime().Unix(),
			Mode: uint32(fi.Mode().Perm()), User: u, Group: g,
			ChecksumPage: dbPath && w.opts.ChecksumPage && name != "pg_filenode.map" && name != "PG_VERSION" &&
				mname != repo.TargetPGData+"/global/pg_control",
		})
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		return w.link(parent, dirPath, dbPath, name, u, g)
	}
	w.log.Warn("exclude special file from backup", zap.String("path", filepath.Join(dirPath, name)))
	return nil
}

// link adds a symlink: a tablespace in pg_tblspc, or a link to a directory or file
// elsewhere in the data directory, and what it points to.
func (w *walker) link(parent, dirPath string, dbPath bool, name, u, g string) error {
	mname := parent + "/" + name
	linkPath := filepath.Join(dirPath, name)
	dest, err := os.Readlink(linkPath)
	if err != nil {
		return fmt.Errorf("walk data directory: %w", err)
	}
	abs := dest
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(dirPath, dest)
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("walk data directory: link '%s' cannot reference another link '%s'", linkPath, abs)
	}
	w.out.Links = append(w.out.Links, repo.ManifestLink{Name: mname, Destination: dest, User: u, Group: g})
	target := repo.ManifestTarget{Name: mname, Type: repo.TargetLink}
	linkName := name
	if parent == pgDataTblspc {
		oid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			return fmt.Errorf("walk data directory: tablespace link '%s' is not named by an oid", linkPath)
		}
		target.Name = repo.TargetPGTblspc + "/" + name
		target.TablespaceID = uint32(oid)
		if w.opts.Tablespaces != nil {
			tsName, ok := w.opts.Tablespaces[uint32(oid)]
			if !ok {
				return fmt.Errorf("walk data directory: tablespace with oid %d not found in tablespace map (was a tablespace created or dropped during the backup?)", oid)
			}
			target.TablespaceName = tsName
		} else {
			target.TablespaceName = "ts" + name
		}
		base, _ := w.findPath(repo.TargetPGData)
		if _, ok := w.findPath(repo.TargetPGTblspc); !ok {
			w.out.Paths = append(w.out.Paths, repo.ManifestPath{Name: repo.TargetPGTblspc, Mode: base.Mode, User: base.User, Group: base.Group})
		}
		tbl, ok := w.findPath(pgDataTblspc)
		if !ok {
			tbl = base
		}
		w.out.Paths = append(w.out.Paths, repo.ManifestPath{Name: target.Name, Mode: tbl.Mode, User: tbl.User, Group: tbl.Group})
		parent, dirPath, linkName = target.Name, linkPath, w.opts.TablespaceID
	}
	fi, err := os.Stat(filepath.Join(dirPath, linkName))
	if err != nil {
		return fmt.Errorf("walk data directory: link '%s' destination: %w", linkPath, err)
	}
	if fi.IsDir() {
		target.Path = dest
	} else {
		if target.TablespaceID != 0 {
			return fmt.Errorf("walk data directory: tablespace link '%s' points to a file", linkPath)
		}
		target.Path, target.File = filepath.Dir(dest), filepath.Base(dest)
	}
	w.out.Targets = append(w.out.Targets, target)
	return w.visit(parent, dirPath, dbPath, linkName, fi)
}

// findPath returns the path entry called name.
func (w *walker) findPath(name string) (repo.ManifestPath, bool) {
	for _, p := range w.out.Paths {
		if p.Name == name {
			return p, true
		}
	}
	return repo.ManifestPath{}, false
}

// removeUnlogged drops every fork but _init of unlogged relations (relations that have
// an _init fork) in database directories, as manifestNewBuild() does.
func removeUnlogged(files []repo.ManifestFile, tablespaceID string) []repo.ManifestFile {
	rel := regexp.MustCompile(`^` + dbPathExp(tablespaceID) + `/` + relationExp + `$`)
	names := make(map[string]bool, len(files))
	for _, f := range files {
		names[f.Name] = true
	}
	return slices.DeleteFunc(files, func(f repo.ManifestFile) bool {
		if !rel.MatchString(f.Name) {
			return false
		}
		dir, base := f.Name[:strings.LastIndexByte(f.Name, '/')+1], f.Name[strings.LastIndexByte(f.Name, '/')+1:]
		end := strings.IndexFunc(base, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(base)
		}
		return names[dir+base[:end]+"_init"]
	})
}
