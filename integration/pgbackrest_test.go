package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pgbackrestStanza is the stanza every fixture uses.
const pgbackrestStanza = "db"

// Repository variant values (pgBackRest option values).
const (
	storagePosix = "posix"
	storageS3    = "s3"
	storageGCS   = "gcs"
	storageAzure = "azure"
	cipherNone   = "none"
	cipherAES    = "aes-256-cbc"
)

// repoVariant describes a repository setup: where it is stored, whether it
// is encrypted and how files are compressed.
type repoVariant struct {
	// Storage is storagePosix, storageS3 (MinIO), storageGCS
	// (fake-gcs-server) or storageAzure (Azurite). pgbackrest 2.45 cannot
	// reach the plain-http GCS and Azure emulators: only pgsidecar uses
	// those two.
	Storage string
	// Cipher is cipherNone or cipherAES (with a random passphrase).
	Cipher string
	// Compress is pgBackRest's compress-type: gz, lz4, zst or none.
	Compress string
}

// String names the variant for subtests, e.g. "s3-aes-zst".
func (v repoVariant) String() string {
	c := v.Cipher
	if c == cipherAES {
		c = "aes"
	}
	return v.Storage + "-" + c + "-" + v.Compress
}

// repoVariants returns every combination of storage, cipher and
// compression the interop tests cover (12).
func repoVariants() []repoVariant {
	var vs []repoVariant
	for _, s := range []string{storagePosix, storageS3} {
		for _, c := range []string{cipherNone, cipherAES} {
			for _, z := range []string{"gz", "lz4", "zst"} {
				vs = append(vs, repoVariant{Storage: s, Cipher: c, Compress: z})
			}
		}
	}
	return vs
}

// repoLocation is where a repository lives and how it is encrypted: what a
// pgsidecar configuration for the same repository needs.
type repoLocation struct {
	// Storage is storagePosix, storageS3, storageGCS or storageAzure.
	Storage string
	// Path is repo1-path: an absolute directory for posix, the key prefix
	// ("/pgbackrest/repo1") inside the bucket or container otherwise.
	Path string
	// Bucket and S3 are the bucket and the service (s3 only).
	Bucket string
	S3     s3Service
	// GCSEndpoint is the emulator's endpoint; Bucket is the bucket (gcs
	// only).
	GCSEndpoint string
	// Azure is the container and its service (azure only).
	Azure azureContainer
	// CipherType is cipherNone or cipherAES; CipherPass is repo1-cipher-pass
	// (empty when not encrypted).
	CipherType string
	CipherPass string
}

// ReadFile returns the raw (possibly compressed and encrypted) content of
// the repository file rel, e.g. "backup/db/backup.info".
func (r repoLocation) ReadFile(t testing.TB, rel string) []byte {
	t.Helper()
	switch r.Storage {
	case storageS3:
		key := strings.TrimPrefix(path.Join(r.Path, rel), "/")
		return getS3Object(t, r.S3.client(t), r.Bucket, key)
	case storageGCS, storageAzure:
		t.Fatalf("ReadFile: %s repositories are not supported", r.Storage)
	}
	b, err := os.ReadFile(filepath.Join(r.Path, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read repository file: %v", err)
	}
	return b
}

// pgbackrestConfig is a pgbackrest.conf for one cluster and one repository,
// with its own log, lock and spool directories.
type pgbackrestConfig struct {
	// Path is the pgbackrest.conf file; Dir the work dir holding it and the
	// log/, lock/ and spool/ directories (and repo/ for posix).
	Path string
	Dir  string
	// Repo is the repository (repo1).
	Repo repoLocation
	// Compress is compress-type.
	Compress string
	// Options are extra [global] options, written last by Write.
	Options map[string]string

	user osUser
}

// newPgbackrestConfig prepares the configuration of one repository variant:
// a work dir, the repository (a directory, or a fresh bucket or container
// with repo1-path /pgbackrest/repo1) and a random passphrase when
// encrypted. The file itself is written by Write once the cluster exists;
// its path is known now, for the cluster's archive_command.
func newPgbackrestConfig(t testing.TB, v repoVariant) *pgbackrestConfig {
	t.Helper()
	u := requirePostgres(t)
	repo := repoLocation{Storage: v.Storage, CipherType: v.Cipher}
	// A bucket or container is created first so that it is removed last,
	// after the cluster (and its archive_command) has stopped.
	switch v.Storage {
	case storageS3:
		repo.S3, repo.Bucket = newS3Bucket(t)
	case storageGCS:
		repo.GCSEndpoint, repo.Bucket = newGCSBucket(t)
	case storageAzure:
		repo.Azure = newAzureContainer(t)
	}
	if v.Storage != storagePosix {
		repo.Path = "/pgbackrest/repo1"
	}
	dir := newWorkDir(t, u, "pgbackrest")
	for _, d := range []string{"log", "lock", "spool"} {
		mkdirAs(t, u, filepath.Join(dir, d))
	}
	if v.Storage == storagePosix {
		repo.Path = mkdirAs(t, u, filepath.Join(dir, "repo"))
	}
	if v.Cipher != cipherNone {
		repo.CipherPass = randomHex(t, 24)
	}
	return &pgbackrestConfig{
		Path:     filepath.Join(dir, "pgbackrest.conf"),
		Dir:      dir,
		Repo:     repo,
		Compress: v.Compress,
		user:     u,
	}
}

// ArchiveCommand returns the archive_command that pushes WAL with
// pgbackrest and this configuration.
func (p *pgbackrestConfig) ArchiveCommand() string {
	return fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", pgbackrestBin, p.Path, pgbackrestStanza)
}

// PgsidecarArchiveCommand returns the archive_command that pushes WAL with
// pgsidecar and this configuration.
func (p *pgbackrestConfig) PgsidecarArchiveCommand() string {
	return fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", pgsidecarBin, p.Path, pgbackrestStanza)
}

// Write writes pgbackrest.conf (mode 0600, owned by the unprivileged user)
// for cluster c and the repository.
func (p *pgbackrestConfig) Write(t testing.TB, c *cluster) {
	t.Helper()
	global := map[string]string{
		"log-path":             filepath.Join(p.Dir, "log"),
		"lock-path":            filepath.Join(p.Dir, "lock"),
		"spool-path":           filepath.Join(p.Dir, "spool"),
		"log-level-file":       "detail",
		"start-fast":           "y",
		"archive-timeout":      "60",
		"compress-type":        p.Compress,
		"repo1-path":           p.Repo.Path,
		"repo1-retention-full": "2",
	}
	switch p.Repo.Storage {
	case storageS3:
		for _, o := range p.Repo.S3.repoOptions(1, p.Repo.Bucket) {
			k, v, _ := strings.Cut(o, "=")
			global[k] = v
		}
	case storageGCS:
		global["repo1-type"] = "gcs"
		global["repo1-gcs-bucket"] = p.Repo.Bucket
		global["repo1-gcs-endpoint"] = p.Repo.GCSEndpoint
		global["repo1-gcs-key-type"] = "none" // the emulator takes no credentials
	case storageAzure:
		a := p.Repo.Azure
		global["repo1-type"] = "azure"
		global["repo1-azure-account"] = a.account
		global["repo1-azure-key"] = a.key
		global["repo1-azure-container"] = a.container
		global["repo1-azure-endpoint"] = a.endpoint
		global["repo1-azure-uri-style"] = "path"
	default:
		global["repo1-type"] = "posix"
	}
	if p.Repo.CipherType != cipherNone {
		global["repo1-cipher-type"] = p.Repo.CipherType
		global["repo1-cipher-pass"] = p.Repo.CipherPass
	}
	maps.Copy(global, p.Options)
	var b strings.Builder
	b.WriteString("[global]\n")
	for _, k := range slices.Sorted(maps.Keys(global)) {
		fmt.Fprintf(&b, "%s=%s\n", k, global[k])
	}
	fmt.Fprintf(&b, "\n[%s]\npg1-path=%s\npg1-port=%d\npg1-socket-path=%s\npg1-user=%s\n",
		pgbackrestStanza, c.DataDir(), c.Port(), c.SocketDir(), pgSuperuser)
	writeFileAs(t, p.user, p.Path, []byte(b.String()))
}

// pgbackrestTry runs pgbackrest 2.45 as the unprivileged user with
// --config=confPath and args, and returns its output and exit code.
func pgbackrestTry(t testing.TB, confPath string, args ...string) cmdResult {
	t.Helper()
	u := requirePostgres(t)
	return runAsUser(t, u, userCmd{
		Path: pgbackrestBin,
		Args: append([]string{"--config=" + confPath}, args...),
		Dir:  filepath.Dir(confPath),
	})
}

// pgbackrestRun is pgbackrestTry that fails the test, with pgbackrest's
// output, on a non-zero exit; it returns the standard output.
func pgbackrestRun(t testing.TB, confPath string, args ...string) string {
	t.Helper()
	res := pgbackrestTry(t, confPath, args...)
	if res.Code != 0 {
		t.Fatalf("pgbackrest %s: %s", strings.Join(args, " "), res)
	}
	return res.Stdout
}

// pgbackrestInfo is one stanza of `pgbackrest info --output=json`, the
// fields the tests read.
type pgbackrestInfo struct {
	Name   string `json:"name"`
	Cipher string `json:"cipher"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Archive []struct {
		ID  string `json:"id"`
		Min string `json:"min"`
		Max string `json:"max"`
	} `json:"archive"`
	Backup []pgbackrestBackup `json:"backup"`
}

// pgbackrestBackup is one backup of pgbackrestInfo.
type pgbackrestBackup struct {
	Label     string   `json:"label"`
	Type      string   `json:"type"`
	Prior     *string  `json:"prior"`
	Reference []string `json:"reference"`
	Error     *bool    `json:"error"`
	Archive   struct {
		Start string `json:"start"`
		Stop  string `json:"stop"`
	} `json:"archive"`
	Info struct {
		Size       int64 `json:"size"`
		Delta      int64 `json:"delta"`
		Repository struct {
			Size  int64 `json:"size"`
			Delta int64 `json:"delta"`
		} `json:"repository"`
	} `json:"info"`
}

// pgbackrestInfoJSON runs `pgbackrest info --output=json` for the stanza
// and returns it.
func pgbackrestInfoJSON(t testing.TB, confPath string) pgbackrestInfo {
	t.Helper()
	out := pgbackrestRun(t, confPath, "--stanza="+pgbackrestStanza, "--output=json", "info")
	var stanzas []pgbackrestInfo
	if err := json.Unmarshal([]byte(out), &stanzas); err != nil {
		t.Fatalf("parse pgbackrest info: %v\n%s", err, out)
	}
	if len(stanzas) != 1 || stanzas[0].Name != pgbackrestStanza {
		t.Fatalf("pgbackrest info: want the one stanza %q, got:\n%s", pgbackrestStanza, out)
	}
	return stanzas[0]
}

// verifyReport is the result of `pgbackrest verify --output=text
// --verbose`. pgbackrest 2.45's verify exits 0 even when it finds errors;
// they are only in this text.
type verifyReport struct {
	// Status is "ok" or "error".
	Status string
	// WAL maps an archive id to its counts "checked" and "valid" (and
	// "missing", "checksum invalid", "size invalid", "other").
	WAL map[string]map[string]int
	// Backups maps a backup label to its status ("valid", ...).
	Backups map[string]string
	// BackupFiles maps a backup label to its counts, as WAL does.
	BackupFiles map[string]map[string]int
	// Text is the whole output.
	Text string
}

var (
	verifyArchiveLine = regexp.MustCompile(`^\s*archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)$`)
	verifyBackupLine  = regexp.MustCompile(`^\s*backup: (\S+), status: ([^,]+), total files checked: (\d+), total valid files: (\d+)$`)
	verifyCountsLine  = regexp.MustCompile(`^\s*missing: (\d+), checksum invalid: (\d+), size invalid: (\d+), other: (\d+)$`)
)

// pgbackrestVerify runs `pgbackrest verify` and parses its report. It
// fails the test if verify fails to run or logs a warning or error.
func pgbackrestVerify(t testing.TB, confPath string) verifyReport {
	t.Helper()
	res := pgbackrestTry(t, confPath, "--stanza="+pgbackrestStanza, "--output=text", "--verbose", "verify")
	if res.Code != 0 || strings.TrimSpace(res.Stderr) != "" {
		t.Fatalf("pgbackrest verify: %s", res)
	}
	r := verifyReport{
		WAL: map[string]map[string]int{}, Backups: map[string]string{},
		BackupFiles: map[string]map[string]int{}, Text: res.Stdout,
	}
	var counts map[string]int // the block the next counts line belongs to
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	for _, line := range strings.Split(res.Stdout, "\n") {
		if st, ok := strings.CutPrefix(line, "status: "); ok {
			r.Status = st
		} else if m := verifyArchiveLine.FindStringSubmatch(line); m != nil {
			counts = map[string]int{"checked": atoi(m[2]), "valid": atoi(m[3])}
			r.WAL[m[1]] = counts
		} else if m := verifyBackupLine.FindStringSubmatch(line); m != nil {
			counts = map[string]int{"checked": atoi(m[3]), "valid": atoi(m[4])}
			r.Backups[m[1]] = m[2]
			r.BackupFiles[m[1]] = counts
		} else if m := verifyCountsLine.FindStringSubmatch(line); m != nil {
			if counts == nil {
				t.Fatalf("pgbackrest verify: counts without archive or backup line:\n%s", res.Stdout)
			}
			counts["missing"], counts["checksum invalid"] = atoi(m[1]), atoi(m[2])
			counts["size invalid"], counts["other"] = atoi(m[3]), atoi(m[4])
		}
	}
	if r.Status == "" {
		t.Fatalf("pgbackrest verify: no status in output:\n%s", res.Stdout)
	}
	return r
}

// walFileName matches an archived WAL segment in the repository:
// segment name, SHA-1 of its content, optional compression extension.
var walFileName = regexp.MustCompile(`^([0-9A-F]{24})-[0-9a-f]{40}(\.(gz|lz4|zst|bz2))?$`)

// pgbackrestArchivedWAL lists the WAL segments archived for the stanza with
// `pgbackrest repo-ls`, as repository-relative paths
// (archive/db/15-1/0000000100000000/<segment>-<sha1>.<ext>), sorted.
func pgbackrestArchivedWAL(t testing.TB, confPath string) []string {
	t.Helper()
	out := pgbackrestRun(t, confPath, "--recurse", "repo-ls", "archive/"+pgbackrestStanza)
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if walFileName.MatchString(path.Base(line)) {
			files = append(files, path.Join("archive", pgbackrestStanza, line))
		}
	}
	slices.Sort(files)
	return files
}

// pgsidecarTry runs the pgsidecar binary built by TestMain as the
// unprivileged user with --config=confPath (the same pgbackrest.conf) and
// args, and returns its output and exit code: the counterpart of
// pgbackrestTry for the interop tests.
func pgsidecarTry(t testing.TB, confPath string, args ...string) cmdResult {
	t.Helper()
	u := requirePostgres(t)
	return runAsUser(t, u, userCmd{
		Path: pgsidecarBin,
		Args: append([]string{"--config=" + confPath}, args...),
		Dir:  filepath.Dir(confPath),
	})
}

// pgsidecarRun is pgsidecarTry that fails the test, with the output, on a
// non-zero exit; it returns the standard output.
func pgsidecarRun(t testing.TB, confPath string, args ...string) string {
	t.Helper()
	res := pgsidecarTry(t, confPath, args...)
	if res.Code != 0 {
		t.Fatalf("pgsidecar %s: %s", strings.Join(args, " "), res)
	}
	return res.Stdout
}

// requireVerified runs `pgbackrest verify` and fails the test unless its
// status is ok and every backup in labels is valid.
func requireVerified(t testing.TB, confPath string, labels ...string) verifyReport {
	t.Helper()
	rep := pgbackrestVerify(t, confPath)
	if rep.Status != "ok" {
		t.Fatalf("pgbackrest verify: status %s\n%s", rep.Status, rep.Text)
	}
	for _, l := range labels {
		if st := rep.Backups[l]; st != "valid" {
			t.Errorf("pgbackrest verify: backup %s is %q, want valid\n%s", l, st, rep.Text)
		}
	}
	return rep
}

// pgbackrestRestoreStarted restores backup set with stock pgbackrest into a
// new data directory (to its consistency point, promoted), starts
// PostgreSQL on it without archiving and returns it; the caller stops it.
func pgbackrestRestoreStarted(t testing.TB, confPath, set string) *cluster {
	t.Helper()
	u := requirePostgres(t)
	dataDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "restore"), "data"))
	pgbackrestRun(t, confPath, "--stanza="+pgbackrestStanza, "--pg1-path="+dataDir, "--set="+set,
		"--type=immediate", "--target-action=promote", "restore")
	r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
	r.Start(t)
	return r
}

// backupLabels lists the labels of the backups info reports, oldest first.
func backupLabels(info pgbackrestInfo) []string {
	labels := make([]string, len(info.Backup))
	for i, b := range info.Backup {
		labels[i] = b.Label
	}
	return labels
}

// requireSameInfo checks that `pgsidecar info`, without the lines pgsidecar
// adds, is byte for byte `pgbackrest info`.
func requireSameInfo(t testing.TB, confPath string) {
	t.Helper()
	stanza := "--stanza=" + pgbackrestStanza
	if ours, theirs := withoutPgsidecarInfo(t, pgsidecarRun(t, confPath, stanza, "info")), pgbackrestRun(t, confPath, stanza, "info"); ours != theirs {
		t.Errorf("pgsidecar info differs from pgbackrest info:\n%s\n---\n%s", ours, theirs)
	}
}
