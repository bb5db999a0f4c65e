package archive

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// Cluster identifies the PostgreSQL cluster whose WAL is archived.
type Cluster struct {
	// Version is the major version string as pgBackRest writes it ("15").
	Version string
	// SystemID is the system identifier from pg_control.
	SystemID uint64
}

// Target is one repository ready to receive WAL. Its archive.info has been
// loaded and checked once.
type Target struct {
	// Repo is the stanza's view of the repository.
	Repo *repo.Repository
	// ArchiveID is the current archive id, e.g. "15-1". archive-push writes
	// only there.
	ArchiveID string
	// Pass is the archive sub-passphrase from archive.info, or "" when the
	// repository is not encrypted.
	Pass string
	// Err, when not nil, says why the repository cannot receive WAL: for
	// example its archive.info could not be loaded, or it describes another
	// cluster. Push then reports the repository as failed for every file,
	// as pgBackRest does.
	Err error
}

// Name returns the repository's name.
func (t *Target) Name() string { return t.Repo.Name() }

// loadArchiveInfos loads every repository's archive.info concurrently.
func loadArchiveInfos(ctx context.Context, repos []*repo.Repository) ([]*repo.ArchiveInfo, []error) {
	infos := make([]*repo.ArchiveInfo, len(repos))
	errs := make([]error, len(repos))
	var wg sync.WaitGroup
	for i, rs := range repos {
		wg.Go(func() { infos[i], errs[i] = rs.LoadArchiveInfo(ctx) })
	}
	wg.Wait()
	return infos, errs
}

// archivePass returns the sub-passphrase that encrypts rs's WAL.
func archivePass(rs *repo.Repository, ai *repo.ArchiveInfo) (string, error) {
	if !rs.Encrypted() {
		return "", nil
	}
	if ai.CipherPass == "" {
		return "", fmt.Errorf("%s: archive.info has no cipher-pass although the repository is encrypted", rs.Name())
	}
	return ai.CipherPass, nil
}

// OpenPush prepares every repository for archive-push, as pgBackRest's
// archivePushCheck does. It loads each archive.info (concurrently) and takes
// its current archive id. It checks that the current cluster is cl, the one
// in pg_control, when cl is not nil. Otherwise every repository must agree
// with the first usable one, whose cluster is then taken as the truth.
//
// Every repository gets a Target, in order. A failed one has Err set. The
// returned Cluster is what segment headers must carry. When no repository
// is usable the error is a *PushError with NoneUsable (code 103).
func OpenPush(ctx context.Context, repos []*repo.Repository, cl *Cluster) ([]Target, Cluster, error) {
	infos, errs := loadArchiveInfos(ctx, repos)
	targets := make([]Target, len(repos))
	var want Cluster
	wantFrom := ""
	if cl != nil {
		want, wantFrom = *cl, "PostgreSQL"
	}
	usable := 0
	for i, rs := range repos {
		t := &targets[i]
		t.Repo = rs
		if t.Err = errs[i]; t.Err != nil {
			continue
		}
		ai := infos[i]
		cur, ok := ai.Current()
		if !ok {
			t.Err = fmt.Errorf("%s: archive.info: current history id %d is not in the history", rs.Name(), ai.CurrentID)
			continue
		}
		if wantFrom != "" && (cur.Version != want.Version || cur.SystemID != want.SystemID) {
			t.Err = mismatchf("%s version %s, system-id %d do not match %s stanza version %s, system-id %d\nHINT: are you archiving to the correct stanza?",
				wantFrom, want.Version, want.SystemID, rs.Name(), cur.Version, cur.SystemID)
			continue
		}
		if t.Pass, t.Err = archivePass(rs, ai); t.Err != nil {
			continue
		}
		if wantFrom == "" {
			want, wantFrom = Cluster{Version: cur.Version, SystemID: cur.SystemID}, rs.Name()+" stanza"
		}
		t.ArchiveID = cur.ArchiveID()
		usable++
	}
	if usable == 0 {
		return targets, Cluster{}, noneUsable("", targets)
	}
	return targets, want, nil
}

// noneUsable is the error of a push for which no target works.
func noneUsable(wal string, targets []Target) error {
	e := &PushError{WAL: wal, NoneUsable: true}
	for i := range targets {
		if targets[i].Err != nil {
			e.Repos = append(e.Repos, RepoError{Repo: targets[i].Name(), Err: targets[i].Err})
		}
	}
	return e
}

// Source is one repository to search for archived WAL.
type Source struct {
	// Repo is the stanza's view of the repository.
	Repo *repo.Repository
	// ArchiveIDs are the archive ids of the cluster, newest first.
	ArchiveIDs []string
	// Pass is the archive sub-passphrase, or "" when not encrypted.
	Pass string
	// Err, when not nil, says why the repository cannot be searched. Get
	// warns about it and uses the others.
	Err error
}

// Name returns the repository's name.
func (s *Source) Name() string { return s.Repo.Name() }

// OpenGet prepares every repository for archive-get, as pgBackRest's
// archiveGetCheck does. It loads each archive.info (concurrently) and keeps
// the history entries whose version and system id are the cluster's, newest
// first. An entry older than the newest is kept only when its directory
// exists. A repository with no matching entry gets an ArchiveMismatchError
// in Err.
func OpenGet(ctx context.Context, repos []*repo.Repository, cl Cluster) []Source {
	infos, errs := loadArchiveInfos(ctx, repos)
	sources := make([]Source, len(repos))
	var wg sync.WaitGroup
	for i, rs := range repos {
		s := &sources[i]
		s.Repo = rs
		if s.Err = errs[i]; s.Err != nil {
			continue
		}
		if s.Pass, s.Err = archivePass(rs, infos[i]); s.Err != nil {
			continue
		}
		wg.Go(func() { s.ArchiveIDs, s.Err = matchingArchiveIDs(ctx, rs, infos[i], cl) })
	}
	wg.Wait()
	return sources
}

// matchingArchiveIDs lists the archive ids of cl in ai, newest first: the
// history is walked from its last entry, as pgBackRest keeps its newest
// entry first.
func matchingArchiveIDs(ctx context.Context, rs *repo.Repository, ai *repo.ArchiveInfo, cl Cluster) ([]string, error) {
	var ids []string
	for i := len(ai.History) - 1; i >= 0; i-- {
		h := ai.History[i]
		if h.Version != cl.Version || h.SystemID != cl.SystemID {
			continue
		}
		id := h.ArchiveID()
		if i != len(ai.History)-1 {
			ok, err := hasObjects(ctx, rs.Store(), rs.ArchiveKey(id+"/"))
			if err != nil {
				return nil, fmt.Errorf("%s: list archive id %s: %w", rs.Name(), id, err)
			}
			if !ok {
				continue
			}
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, mismatchf("%s: unable to retrieve the archive id for database version '%s' and system-id '%d'",
			rs.Name(), cl.Version, cl.SystemID)
	}
	return ids, nil
}

// errStop ends a List walk early.
var errStop = errors.New("stop")

// hasObjects reports whether any object exists under prefix.
func hasObjects(ctx context.Context, s storage.Store, prefix string) (bool, error) {
	err := s.List(ctx, prefix, func(storage.ObjectInfo) error { return errStop })
	if errors.Is(err, errStop) {
		return true, nil
	}
	return false, err
}
