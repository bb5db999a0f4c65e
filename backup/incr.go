package backup

import (
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/repo"
)

// ApplyPrior makes m (freshly walked, Label set) a differential or incremental backup of
// prior, as pgBackRest's manifestBuildIncr() does: m takes prior's cipher passphrase,
// compression and reference list, and every file whose size matches prior's and whose
// timestamp is unchanged (or whose size is 0) gets Reference to the backup holding its
// data plus the prior's checksum, repo checksum and repo size, so that it is not copied.
//
// It returns the names of referenced files whose content must still be compared by
// checksum before the reference is trusted (pgBackRest's delta mode): every candidate
// when delta is on (forced when a timestamp went backwards, a size changed with an
// unchanged timestamp, or the timeline changed), and otherwise, to be safe, the files
// whose timestamp is not older than the prior backup's start, which may have changed
// within the same second after the prior backup read them.
//
// A referenced file keeps the prior's bundle id and offset: its data stays in the
// bundle of the backup it references. When m bundles (m.Bundle), zero-length files are
// neither referenced nor stored, as pgBackRest does. pgsidecar copies afresh what it
// could not reference correctly: files stored block-incrementally, files in a prior's
// raw bundles (backup-bundle-raw, which pgsidecar does not write: m's own
// backup-bundle-raw stays false), and, when m does not bundle, zero-length files that a
// bundling prior did not store (pgBackRest references those, and its verify then
// reports them missing).
func ApplyPrior(m, prior *repo.Manifest, log *zap.Logger) map[string]bool {
	if log == nil {
		log = zap.NewNop()
	}
	m.Prior = prior.Label
	m.Reference = prior.ChildReference(m.Label)
	m.CipherPass = prior.CipherPass
	if m.Options.CompressType != prior.Options.CompressType {
		log.Warn("diff/incr backup cannot alter compress-type option, reset to the prior backup's value",
			zap.String("compress-type", string(prior.Options.CompressType)), zap.String("prior", prior.Label))
	}
	m.Options.CompressType = prior.Options.CompressType
	m.Options.CompressLevel = prior.Options.CompressLevel

	priorFiles := make(map[string]*repo.ManifestFile, len(prior.Files))
	for i := range prior.Files {
		priorFiles[prior.Files[i].Name] = &prior.Files[i]
	}
	delta := false
	if m.ArchiveStart != "" && len(prior.ArchiveStop) >= 8 && m.ArchiveStart[:8] != prior.ArchiveStop[:8] {
		log.Warn("a timeline switch has occurred since the prior backup, enabling delta checksum", zap.String("prior", prior.Label))
		delta = true
	} else if prior.Options.Online != m.Options.Online {
		log.Warn("the online option has changed since the prior backup, enabling delta checksum", zap.String("prior", prior.Label))
		delta = true
	}
	if !delta {
		for i := range m.Files {
			f := &m.Files[i]
			p, ok := priorFiles[f.Name]
			if !ok {
				continue
			}
			if f.Timestamp < p.Timestamp {
				log.Warn("file has timestamp earlier than prior backup, enabling delta checksum", zap.String("file", f.Name))
				delta = true
				break
			}
			if f.Size != p.Size && f.Timestamp == p.Timestamp {
				log.Warn("file has same timestamp as prior but different size, enabling delta checksum", zap.String("file", f.Name))
				delta = true
				break
			}
		}
	}
	if delta {
		t := true
		m.Options.Delta = &t
	}
	verify := map[string]bool{}
	for i := range m.Files {
		f := &m.Files[i]
		p, ok := priorFiles[f.Name]
		if !ok || p.BlockIncrSize != 0 || (p.BundleID != 0 && prior.BundleRaw) {
			continue
		}
		if f.Size == 0 && (m.Bundle || (prior.Bundle && p.BundleID == 0)) {
			continue
		}
		if f.Size != p.Size || !(delta || f.Size == 0 || f.Timestamp == p.Timestamp) {
			continue
		}
		if p.Checksum == "" && f.Size != 0 {
			continue // a partial prior entry: copy
		}
		f.RepoSize = p.RepoSize
		f.Checksum = p.Checksum
		f.RepoChecksum = p.RepoChecksum
		f.ChecksumPage, f.ChecksumPageError, f.ChecksumPageErrorList = p.ChecksumPage, p.ChecksumPageError, p.ChecksumPageErrorList
		f.Reference = p.Reference
		f.BundleID, f.BundleOffset = p.BundleID, p.BundleOffset
		if f.Reference == "" {
			f.Reference = prior.Label
		}
		if f.Size != 0 && (delta || f.Timestamp >= prior.TimestampStart) {
			verify[f.Name] = true
		}
	}
	return verify
}
