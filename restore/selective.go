package restore

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pgsidecar/pgsidecar/repo"
)

// ErrDatabase is returned for a --db-include or --db-exclude that names no
// database of the backup or a database that cannot be selected.
var ErrDatabase = errors.New("invalid database selection")

// firstNormalObjectID is PostgreSQL's FirstNormalObjectId: oids below it are
// system objects.
const firstNormalObjectID = 16384

// isSystemDB reports whether a database is one pgBackRest always restores.
func isSystemDB(name string, oid uint64) bool {
	return name == "postgres" || name == "template0" || name == "template1" || oid < firstNormalObjectID
}

// zeroedDatabases returns the oids of the databases whose files a selective
// restore (--db-include, --db-exclude) writes as zeroed sparse files, as
// pgBackRest 2.45 chooses them: with an include list every user database not
// in it (plus the excluded ones); otherwise the excluded ones. System
// databases cannot be included; they are zeroed only when excluded.
func zeroedDatabases(m *repo.Manifest, include, exclude []string) ([]string, error) {
	if len(include) == 0 && len(exclude) == 0 {
		return nil, nil
	}
	var dbs, system []string
	for _, d := range m.Databases {
		if isSystemDB(d.Name, uint64(d.ID)) {
			id := strconv.FormatUint(uint64(d.ID), 10)
			system = append(system, id)
			dbs = append(dbs, id)
		}
	}
	tsID := "PG_" + m.DB.Version + "_" + strconv.FormatUint(uint64(m.DB.CatalogVersion), 10)
	baseRE := regexp.MustCompile(`^pg_data/base/([0-9]+)/PG_VERSION$`)
	tsRE := regexp.MustCompile(`^pg_tblspc/[0-9]+/` + regexp.QuoteMeta(tsID) + `/([0-9]+)/PG_VERSION$`)
	for i := range m.Files {
		sm := baseRE.FindStringSubmatch(m.Files[i].Name)
		if sm == nil {
			sm = tsRE.FindStringSubmatch(m.Files[i].Name)
		}
		if sm == nil {
			continue
		}
		if oid, _ := strconv.ParseUint(sm[1], 10, 32); oid < firstNormalObjectID && !slices.Contains(system, sm[1]) {
			system = append(system, sm[1])
		}
		if !slices.Contains(dbs, sm[1]) {
			dbs = append(dbs, sm[1])
		}
	}
	if len(dbs) == 0 {
		return nil, fmt.Errorf("no databases found for selective restore: is this a valid cluster? %w", ErrDatabase)
	}
	resolve := func(kind, db string) (string, error) {
		if slices.Contains(dbs, db) {
			return db, nil
		}
		for _, d := range m.Databases {
			if id := strconv.FormatUint(uint64(d.ID), 10); d.Name == db && slices.Contains(dbs, id) {
				return id, nil
			}
		}
		return "", fmt.Errorf("database to %s '%s' does not exist: %w", kind, db, ErrDatabase)
	}
	var excluded []string
	for _, db := range exclude {
		id, err := resolve("exclude", db)
		if err != nil {
			return nil, err
		}
		excluded = append(excluded, id)
	}
	if len(include) == 0 {
		slices.Sort(excluded)
		return slices.Compact(excluded), nil
	}
	zero := slices.Clone(dbs)
	for _, db := range include {
		id, err := resolve("include", db)
		if err != nil {
			return nil, err
		}
		if slices.Contains(system, id) {
			return nil, fmt.Errorf("system databases (template0, postgres, etc.) are included by default: %w", ErrDatabase)
		}
		if slices.Contains(excluded, id) {
			return nil, fmt.Errorf("database to include '%s' is in the exclude list: %w", db, ErrDatabase)
		}
		zero = slices.DeleteFunc(zero, func(s string) bool { return s == id })
	}
	zero = slices.DeleteFunc(zero, func(s string) bool { return slices.Contains(system, s) && !slices.Contains(excluded, s) })
	slices.Sort(zero)
	return zero, nil
}

// zeroMatcher returns whether a manifest file name belongs to a zeroed
// database (its PG_VERSION is always restored).
func zeroMatcher(m *repo.Manifest, zeroed []string) func(name string) bool {
	if len(zeroed) == 0 {
		return func(string) bool { return false }
	}
	tsID := "PG_" + m.DB.Version + "_" + strconv.FormatUint(uint64(m.DB.CatalogVersion), 10)
	var prefixes []string
	for _, db := range zeroed {
		prefixes = append(prefixes, "pg_data/base/"+db+"/")
		for _, t := range m.Targets {
			if t.TablespaceID != 0 {
				prefixes = append(prefixes, t.Name+"/"+tsID+"/"+db+"/")
			}
		}
	}
	return func(name string) bool {
		if strings.HasSuffix(name, "/PG_VERSION") {
			return false
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
}
