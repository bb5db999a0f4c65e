// Package restore writes a backup from a pgBackRest-format repository into a
// PostgreSQL data directory and its tablespaces, as pgBackRest 2.45's restore
// does: paths, links and files with the manifest's modes, owners and
// timestamps, every file checked against its SHA-1 and size, a delta mode that
// keeps matching files, and the recovery settings PostgreSQL 12+ reads from
// postgresql.auto.conf.
package restore

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgsidecar/pgsidecar/repo"
)

// ErrUnsafePath is returned for a manifest entry whose name or target would
// place data outside the restore's directories.
var ErrUnsafePath = errors.New("manifest path escapes the restore target")

// Manifest target and path names.
const (
	targetPGData  = "pg_data"
	targetTblspc  = "pg_tblspc"
	pgControlName = "pg_data/global/pg_control"
	tmpExt        = ".pgbackrest.tmp"
	manifestFile  = "backup.manifest"
)

// Mapping says where the targets of a backup are restored.
type Mapping struct {
	// DataDir is the directory pg_data is restored into (pg1-path).
	DataDir string
	// TablespaceMap maps tablespace names or oids to new locations.
	TablespaceMap map[string]string
	// TablespaceMapAll, when set, places every tablespace not in
	// TablespaceMap at TablespaceMapAll/<name>.
	TablespaceMapAll string
	// LinkAll restores every link of pg_data (other than tablespaces) as a
	// link; otherwise only the links LinkMap names are, and the others
	// become plain directories and files in pg_data.
	LinkAll bool
	// LinkMap maps link names (relative to pg_data, e.g. "pg_wal") to new
	// destinations; a mapped link is restored as a link.
	LinkMap map[string]string
}

// root is a restored target: where its manifest name is placed on disk.
type root struct {
	name string // manifest target name ("pg_data", "pg_tblspc/16385", "pg_data/pg_wal")
	dir  string // directory on disk
	file string // file name for a link to a file
	link string // manifest link name creating the symlink ("" for pg_data)
	// clean is the directory that must be empty for a new restore and that
	// a delta restore cleans: dir, or for a tablespace only its
	// PG_<version>_<catalog> directory, as other clusters may share the location.
	clean string
}

// layout maps manifest names to paths on disk.
type layout struct {
	roots []root // pg_data first
	links map[string]string
	// dropped are link names restored as plain entries.
	dropped map[string]bool
}

// validName reports whether name is a clean, relative manifest name.
func validName(name string) bool {
	if name == "" || strings.ContainsRune(name, 0) || strings.HasPrefix(name, "/") || path.Clean(name) != name {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." || el == "." || el == "" {
			return false
		}
	}
	return true
}

// tablespaceName returns the target name of a tablespace oid.
func tablespaceTarget(oid string) string { return targetTblspc + "/" + oid }

// newLayout validates every name of m and computes where each target goes.
// Nothing is written: a manifest with an escaping name fails here.
func newLayout(m *repo.Manifest, mp Mapping) (*layout, error) {
	if !filepath.IsAbs(mp.DataDir) {
		return nil, fmt.Errorf("pg1-path %q: must be absolute", mp.DataDir)
	}
	l := &layout{links: map[string]string{}, dropped: map[string]bool{}}
	l.roots = append(l.roots, root{name: targetPGData, dir: filepath.Clean(mp.DataDir), clean: filepath.Clean(mp.DataDir)})
	tsVersionDir := "PG_" + m.DB.Version + "_" + strconv.FormatUint(uint64(m.DB.CatalogVersion), 10)
	usedMap := map[string]bool{}
	for _, t := range m.Targets {
		if !validName(t.Name) {
			return nil, fmt.Errorf("target %q: %w", t.Name, ErrUnsafePath)
		}
		switch {
		case t.Name == targetPGData:
			continue
		case t.TablespaceID != 0 || strings.HasPrefix(t.Name, targetTblspc+"/"):
			oid, err := strconv.ParseUint(strings.TrimPrefix(t.Name, targetTblspc+"/"), 10, 32)
			if err != nil || t.Name != tablespaceTarget(strconv.FormatUint(oid, 10)) || t.Type != repo.TargetLink {
				return nil, fmt.Errorf("tablespace target %q: %w", t.Name, ErrUnsafePath)
			}
			dir := t.Path
			if p, ok := mp.TablespaceMap[t.TablespaceName]; ok && t.TablespaceName != "" {
				dir, usedMap[t.TablespaceName] = p, true
			} else if p, ok := mp.TablespaceMap[strconv.FormatUint(oid, 10)]; ok {
				dir, usedMap[strconv.FormatUint(oid, 10)] = p, true
			} else if mp.TablespaceMapAll != "" {
				dir = filepath.Join(mp.TablespaceMapAll, t.TablespaceName)
			}
			if !filepath.IsAbs(dir) {
				return nil, fmt.Errorf("tablespace %q location %q is not absolute: %w", t.Name, dir, ErrUnsafePath)
			}
			l.roots = append(l.roots, root{name: t.Name, dir: filepath.Clean(dir), link: targetPGData + "/" + t.Name,
				clean: filepath.Join(dir, tsVersionDir)})
		case strings.HasPrefix(t.Name, targetPGData+"/") && t.Type == repo.TargetLink:
			rel := strings.TrimPrefix(t.Name, targetPGData+"/")
			dest, mapped := mp.LinkMap[rel]
			if !mapped && !mp.LinkAll {
				l.dropped[t.Name] = true
				continue
			}
			usedMap[rel] = mapped
			if !mapped {
				dest = t.Path
			}
			if !filepath.IsAbs(dest) || (t.File != "" && !validName(t.File)) || strings.Contains(t.File, "/") {
				return nil, fmt.Errorf("link target %q: %w", t.Name, ErrUnsafePath)
			}
			l.roots = append(l.roots, root{name: t.Name, dir: filepath.Clean(dest), file: t.File, link: t.Name, clean: filepath.Clean(dest)})
		default:
			return nil, fmt.Errorf("target %q: %w", t.Name, ErrUnsafePath)
		}
	}
	for k := range mp.TablespaceMap {
		if !usedMap[k] {
			return nil, fmt.Errorf("--tablespace-map=%s: no such tablespace in the backup", k)
		}
	}
	for k := range mp.LinkMap {
		if _, ok := usedMap[k]; !ok {
			return nil, fmt.Errorf("--link-map=%s: no such link in the backup", k)
		}
	}
	for _, r := range l.roots {
		if r.link != "" {
			l.links[r.link] = r.name
		}
	}
	for _, k := range m.Links {
		if !validName(k.Name) || !strings.HasPrefix(k.Name, targetPGData+"/") {
			return nil, fmt.Errorf("link %q: %w", k.Name, ErrUnsafePath)
		}
		if _, ok := l.links[k.Name]; !ok && !l.dropped[k.Name] {
			return nil, fmt.Errorf("link %q has no target in the manifest: %w", k.Name, ErrUnsafePath)
		}
	}
	check := func(kind, name string) error {
		if !validName(name) {
			return fmt.Errorf("%s %q: %w", kind, name, ErrUnsafePath)
		}
		p, err := l.fsPath(name)
		if err != nil {
			return fmt.Errorf("%s %q: %w", kind, name, err)
		}
		if p == "" && kind == "file" {
			return fmt.Errorf("%s %q: %w", kind, name, ErrUnsafePath)
		}
		// A name below a restored link would be written through it.
		for link, target := range l.links {
			if link != target && strings.HasPrefix(name, link+"/") {
				return fmt.Errorf("%s %q is below link %q: %w", kind, name, link, ErrUnsafePath)
			}
		}
		return nil
	}
	for _, p := range m.Paths {
		if err := check("path", p.Name); err != nil {
			return nil, err
		}
	}
	for i := range m.Files {
		if err := check("file", m.Files[i].Name); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// fsPath returns where manifest name is placed on disk: under the target
// with the longest matching name.
func (l *layout) fsPath(name string) (string, error) {
	best := -1
	for i, r := range l.roots {
		if (name == r.name || strings.HasPrefix(name, r.name+"/")) && (best < 0 || len(r.name) > len(l.roots[best].name)) {
			best = i
		}
	}
	if best < 0 {
		if name == targetTblspc {
			// The pg_tblspc path entry exists only to hold the targets.
			return "", nil
		}
		return "", fmt.Errorf("not under any target: %w", ErrUnsafePath)
	}
	r := l.roots[best]
	rest := strings.TrimPrefix(strings.TrimPrefix(name, r.name), "/")
	if r.file != "" {
		if rest != "" {
			return "", fmt.Errorf("below a file link: %w", ErrUnsafePath)
		}
		return filepath.Join(r.dir, r.file), nil
	}
	return filepath.Join(r.dir, filepath.FromSlash(rest)), nil
}

// linkPath returns where the symlink of a restored root is created and its
// destination.
func (l *layout) linkPath(r root) (at, dest string) {
	at = filepath.Join(l.roots[0].dir, filepath.FromSlash(strings.TrimPrefix(r.link, targetPGData+"/")))
	dest = r.dir
	if r.file != "" {
		dest = filepath.Join(r.dir, r.file)
	}
	return at, dest
}
