package backup

import (
	"maps"
	"slices"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
)

const (
	sumA = "1111111111111111111111111111111111111111"
	sumB = "2222222222222222222222222222222222222222"
)

func priorManifest() *repo.Manifest {
	return &repo.Manifest{
		Label: "20260101-000000F_20260102-000000I", Type: repo.BackupIncr, CipherPass: "prior-pass",
		Reference:      []string{"20260101-000000F", "20260101-000000F_20260102-000000I"},
		TimestampStart: 1000, ArchiveStop: "000000010000000000000005",
		Options: repo.ManifestOptions{CompressType: repo.CompressLz4, Online: true},
		Files: []repo.ManifestFile{
			{Name: "pg_data/same", Size: 10, RepoSize: 7, Timestamp: 900, Checksum: sumA, RepoChecksum: sumB, Reference: "20260101-000000F"},
			{Name: "pg_data/own", Size: 10, RepoSize: 8, Timestamp: 900, Checksum: sumA},
			{Name: "pg_data/grown", Size: 10, Timestamp: 900, Checksum: sumA},
			{Name: "pg_data/touched", Size: 10, Timestamp: 900, Checksum: sumA},
			{Name: "pg_data/recent", Size: 10, Timestamp: 1000, Checksum: sumA},
			{Name: "pg_data/empty", Size: 0, Timestamp: 900},
			{Name: "pg_data/bundled", Size: 10, Timestamp: 900, Checksum: sumA, BundleID: 2, BundleOffset: 40},
		},
	}
}

func TestApplyPrior(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		archive    string
		files      []repo.ManifestFile
		wantRef    map[string]string // file -> reference ("" = copy)
		wantVerify []string
		wantDelta  bool
		// bundle is m.Bundle; priorBundle and priorRaw the prior's backup-bundle(-raw).
		bundle, priorBundle, priorRaw bool
	}{
		{
			name:    "size and timestamp rule",
			archive: "000000010000000000000007",
			files: []repo.ManifestFile{
				{Name: "pg_data/same", Size: 10, Timestamp: 900},
				{Name: "pg_data/own", Size: 10, Timestamp: 900},
				{Name: "pg_data/grown", Size: 12, Timestamp: 950},
				{Name: "pg_data/touched", Size: 10, Timestamp: 950},
				{Name: "pg_data/recent", Size: 10, Timestamp: 1000},
				{Name: "pg_data/empty", Size: 0, Timestamp: 990},
				{Name: "pg_data/bundled", Size: 10, Timestamp: 900},
				{Name: "pg_data/new", Size: 10, Timestamp: 900},
			},
			wantRef: map[string]string{
				"pg_data/same": "20260101-000000F", "pg_data/own": "20260101-000000F_20260102-000000I",
				"pg_data/grown": "", "pg_data/touched": "", "pg_data/recent": "20260101-000000F_20260102-000000I",
				"pg_data/empty": "20260101-000000F_20260102-000000I", "pg_data/bundled": "20260101-000000F_20260102-000000I",
				"pg_data/new": "",
			},
			wantVerify: []string{"pg_data/recent"},
		},
		{
			name:    "bundling: zero-length files are not referenced",
			archive: "000000010000000000000007",
			bundle:  true,
			files: []repo.ManifestFile{
				{Name: "pg_data/empty", Size: 0, Timestamp: 990},
				{Name: "pg_data/bundled", Size: 10, Timestamp: 900},
				{Name: "pg_data/own", Size: 10, Timestamp: 900},
			},
			wantRef: map[string]string{
				"pg_data/empty": "", "pg_data/bundled": "20260101-000000F_20260102-000000I",
				"pg_data/own": "20260101-000000F_20260102-000000I",
			},
		},
		{
			name:        "bundling prior: its unstored zero-length files are not referenced",
			archive:     "000000010000000000000007",
			priorBundle: true,
			files: []repo.ManifestFile{
				{Name: "pg_data/empty", Size: 0, Timestamp: 990},
				{Name: "pg_data/bundled", Size: 10, Timestamp: 900},
			},
			wantRef: map[string]string{"pg_data/empty": "", "pg_data/bundled": "20260101-000000F_20260102-000000I"},
		},
		{
			name:     "raw bundles are not referenced",
			archive:  "000000010000000000000007",
			priorRaw: true,
			files: []repo.ManifestFile{
				{Name: "pg_data/bundled", Size: 10, Timestamp: 900},
				{Name: "pg_data/own", Size: 10, Timestamp: 900},
			},
			wantRef: map[string]string{"pg_data/bundled": "", "pg_data/own": "20260101-000000F_20260102-000000I"},
		},
		{
			name:    "same timestamp other size forces delta",
			archive: "000000010000000000000007",
			files: []repo.ManifestFile{
				{Name: "pg_data/same", Size: 10, Timestamp: 900},
				{Name: "pg_data/own", Size: 11, Timestamp: 900},
				{Name: "pg_data/touched", Size: 10, Timestamp: 950},
			},
			wantRef: map[string]string{
				"pg_data/same": "20260101-000000F", "pg_data/own": "", "pg_data/touched": "20260101-000000F_20260102-000000I",
			},
			wantVerify: []string{"pg_data/same", "pg_data/touched"},
			wantDelta:  true,
		},
		{
			name:    "timeline switch forces delta",
			archive: "000000020000000000000007",
			files: []repo.ManifestFile{
				{Name: "pg_data/touched", Size: 10, Timestamp: 950},
			},
			wantRef:    map[string]string{"pg_data/touched": "20260101-000000F_20260102-000000I"},
			wantVerify: []string{"pg_data/touched"},
			wantDelta:  true,
		},
		{
			name:    "earlier timestamp forces delta",
			archive: "000000010000000000000007",
			files: []repo.ManifestFile{
				{Name: "pg_data/own", Size: 10, Timestamp: 800},
			},
			wantRef:    map[string]string{"pg_data/own": "20260101-000000F_20260102-000000I"},
			wantVerify: []string{"pg_data/own"},
			wantDelta:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prior := priorManifest()
			prior.Bundle, prior.BundleRaw = tc.priorBundle || tc.priorRaw, tc.priorRaw
			f := false
			m := &repo.Manifest{
				Label: "20260101-000000F_20260103-000000I", Type: repo.BackupIncr, ArchiveStart: tc.archive, Bundle: tc.bundle,
				Options: repo.ManifestOptions{CompressType: repo.CompressGz, Online: true, Delta: &f},
				Files:   slices.Clone(tc.files),
			}
			verify := ApplyPrior(m, prior, nil)
			if m.Prior != prior.Label || m.CipherPass != "prior-pass" || m.Options.CompressType != repo.CompressLz4 {
				t.Errorf("prior %q pass %q compress %q: not inherited", m.Prior, m.CipherPass, m.Options.CompressType)
			}
			wantRefs := append(slices.Clone(prior.Reference), m.Label)
			if !slices.Equal(m.Reference, wantRefs) {
				t.Errorf("reference list %q, want %q", m.Reference, wantRefs)
			}
			if got := m.Options.Delta != nil && *m.Options.Delta; got != tc.wantDelta {
				t.Errorf("delta %v, want %v", got, tc.wantDelta)
			}
			for _, file := range m.Files {
				want := tc.wantRef[file.Name]
				if file.Reference != want {
					t.Errorf("%s: reference %q, want %q", file.Name, file.Reference, want)
				}
				if want != "" && file.Size != 0 && file.Checksum != sumA {
					t.Errorf("%s: checksum %q not inherited", file.Name, file.Checksum)
				}
				if file.Name == "pg_data/same" && want != "" && (file.RepoSize != 7 || file.RepoChecksum != sumB) {
					t.Errorf("%s: repo size/checksum %d %q not inherited", file.Name, file.RepoSize, file.RepoChecksum)
				}
				wantBundle := [2]uint64{}
				if file.Name == "pg_data/bundled" && want != "" {
					wantBundle = [2]uint64{2, 40} // the data stays in the prior's bundle
				}
				if got := [2]uint64{file.BundleID, file.BundleOffset}; got != wantBundle {
					t.Errorf("%s: bundle id/offset %v, want %v", file.Name, got, wantBundle)
				}
				if m.BundleRaw {
					t.Errorf("backup-bundle-raw inherited: pgsidecar writes no raw bundles")
				}
			}
			got := slices.Sorted(maps.Keys(verify))
			if !slices.Equal(got, tc.wantVerify) {
				t.Errorf("verify %q, want %q", got, tc.wantVerify)
			}
		})
	}
}

func TestSegmentRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		start, stop string
		size        uint64
		want        []string
		wantErr     bool
	}{
		{"000000010000000000000002", "000000010000000000000002", 16 << 20, []string{"000000010000000000000002"}, false},
		{"0000000100000000000000FE", "000000010000000100000001", 16 << 20,
			[]string{"0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000", "000000010000000100000001"}, false},
		{"000000010000000000003FFF", "000000010000000100000000", 256 << 10,
			[]string{"000000010000000000003FFF", "000000010000000100000000"}, false},
		{"000000010000000000000003", "000000010000000000000002", 16 << 20, nil, true},
		{"000000010000000000000003", "000000010000000000000004", 3 << 20, nil, true},
		{"junk", "000000010000000000000004", 16 << 20, nil, true},
	} {
		got, err := SegmentRange(tc.start, tc.stop, tc.size)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("SegmentRange(%s, %s, %d) = %q, %v; want %q (error %v)", tc.start, tc.stop, tc.size, got, err, tc.want, tc.wantErr)
		}
	}
}
