package integration

import (
	"encoding/json"
	"testing"
	"time"
)

// matrixDataQuery is a checksum of every pgbench table, plus
// fixtureDataQuery's summary: what a restore must bring back exactly.
const matrixDataQuery = "SELECT " +
	"(SELECT md5(string_agg(a::text, ',' ORDER BY aid)) FROM pgbench_accounts a) || '|' || " +
	"(SELECT md5(string_agg(b::text, ',' ORDER BY bid)) FROM pgbench_branches b) || '|' || " +
	"(SELECT md5(string_agg(t::text, ',' ORDER BY tid)) FROM pgbench_tellers t) || '|' || " +
	"(SELECT md5(coalesce(string_agg(h::text, ',' ORDER BY h::text), '')) FROM pgbench_history h) || '|' || " +
	"(" + fixtureDataQuery + ")"

// matrixBackup is one backup of a matrix case and the data it holds.
type matrixBackup struct {
	typ, label, data string
}

// TestBackupRestoreMatrix runs the whole backup and restore cycle with
// pgsidecar against every repository type (posix, S3 on MinIO, GCS on
// fake-gcs-server, Azure on Azurite), plain and encrypted, the
// compression types spread over them so that each one meets both cipher
// settings: a PostgreSQL 15 cluster archives with pgsidecar archive-push,
// pgsidecar takes a full, a differential and an incremental backup with
// pgbench writes in between, and each of the three backups, restored by
// pgsidecar to its consistency point and promoted, holds exactly the data
// recorded when it was taken. For posix and S3 stock pgbackrest 2.45
// restores the latest backup as well.
func TestBackupRestoreMatrix(t *testing.T) {
	t.Parallel()
	start := time.Now()
	t.Cleanup(func() { t.Logf("matrix done in %v", time.Since(start).Round(time.Second)) })
	for _, v := range []repoVariant{
		{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"},
		{Storage: storagePosix, Cipher: cipherAES, Compress: "lz4"},
		{Storage: storageS3, Cipher: cipherNone, Compress: "zst"},
		{Storage: storageS3, Cipher: cipherAES, Compress: "none"},
		{Storage: storageGCS, Cipher: cipherNone, Compress: "lz4"},
		{Storage: storageGCS, Cipher: cipherAES, Compress: "gz"},
		{Storage: storageAzure, Cipher: cipherNone, Compress: "none"},
		{Storage: storageAzure, Cipher: cipherAES, Compress: "zst"},
	} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			backups := matrixBackups(t, v)
			t.Logf("%s: 3 backups in %v", v, time.Since(start).Round(time.Millisecond))
			start = time.Now()
			matrixRestores(t, v, backups)
			t.Logf("%s: restores in %v", v, time.Since(start).Round(time.Millisecond))
		})
	}
}

// matrixBackups builds the cluster of variant v, archiving with pgsidecar,
// takes the full, differential and incremental backups with pgbench writes
// between them, and returns the repository's configuration and the backups
// with the data each holds.
func matrixBackups(t *testing.T, v repoVariant) matrixCase {
	t.Helper()
	cfg := newPgbackrestConfig(t, v)
	cfg.Options = map[string]string{"process-max": "2"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.PgsidecarArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL)")

	mc := matrixCase{config: cfg}
	for _, typ := range []string{"full", "diff", "incr"} {
		if typ != "full" {
			c.Pgbench(t, "-n", "-c", "2", "-t", "100")
		}
		c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('"+typ+"')")
		pgsidecarRun(t, cfg.Path, stanza, "--type="+typ, "backup")
		// Nothing writes while the backup runs: the data at its end is
		// what a restore to its consistency point must give.
		mc.backups = append(mc.backups, matrixBackup{typ: typ, data: c.SQL(t, matrixDataQuery)})
	}
	for i := 1; i < len(mc.backups); i++ {
		if mc.backups[i].data == mc.backups[i-1].data {
			t.Fatalf("the %s backup's data equals the %s one's: the writes between them changed nothing", mc.backups[i].typ, mc.backups[i-1].typ)
		}
	}

	info := pgsidecarInfoJSON(t, cfg.Path)
	if info.Status.Code != 0 || info.Cipher != v.Cipher {
		t.Fatalf("pgsidecar info: status %d %s, cipher %s; want ok, %s", info.Status.Code, info.Status.Message, info.Cipher, v.Cipher)
	}
	if len(info.Backup) != len(mc.backups) {
		t.Fatalf("pgsidecar info: %d backups, want %d", len(info.Backup), len(mc.backups))
	}
	for i, b := range info.Backup {
		if b.Type != mc.backups[i].typ {
			t.Fatalf("pgsidecar info: backup %d (%s) is %s, want %s", i, b.Label, b.Type, mc.backups[i].typ)
		}
		mc.backups[i].label = b.Label
		if i > 0 && (b.Prior == nil || *b.Prior != info.Backup[i-1].Label) {
			t.Errorf("pgsidecar info: %s backup %s has prior %v, want %s", b.Type, b.Label, b.Prior, info.Backup[i-1].Label)
		}
	}
	return mc
}

// matrixCase is a repository holding a matrix case's backups.
type matrixCase struct {
	config  *pgbackrestConfig
	backups []matrixBackup
}

// matrixRestores restores each backup of mc with pgsidecar (and, for
// posix and s3, the latest with stock pgbackrest) into a new directory,
// starts PostgreSQL on it and compares its data with the recorded one.
func matrixRestores(t *testing.T, v repoVariant, mc matrixCase) {
	t.Helper()
	cfg := mc.config
	check := func(who string, b matrixBackup, r *cluster) {
		t.Helper()
		r.Start(t) // waits for the promotion at the consistency point
		if got := r.SQL(t, matrixDataQuery); got != b.data {
			t.Errorf("%s restore of the %s backup %s: data %q, want %q", who, b.typ, b.label, got, b.data)
		}
		r.Stop(t)
	}
	for _, b := range mc.backups {
		dataDir, _ := pgsidecarRestore(t, cfg.Path, "--set="+b.label, "--type=immediate", "--target-action=promote", "--process-max=2")
		check("pgsidecar", b, attachCluster(t, dataDir, map[string]string{"archive_mode": "off"}))
	}
	// pgbackrest 2.45 cannot reach the plain-http GCS and Azure emulators
	// (it knows neither repo-gcs-key-type=none nor an http:// Azure
	// endpoint): stock pgbackrest restores from posix and S3 only.
	if v.Storage != storagePosix && v.Storage != storageS3 {
		return
	}
	latest := mc.backups[len(mc.backups)-1]
	check("pgbackrest", latest, pgbackrestRestore(t, &pgbackrestFixture{Variant: v, Config: cfg}, "--type=immediate", "--target-action=promote"))
}

// pgsidecarInfoJSON runs `pgsidecar info --output=json` for the stanza and
// returns it: the counterpart of pgbackrestInfoJSON for repositories
// pgbackrest cannot reach.
func pgsidecarInfoJSON(t testing.TB, confPath string) pgbackrestInfo {
	t.Helper()
	out := pgsidecarRun(t, confPath, "--stanza="+pgbackrestStanza, "--output=json", "info")
	var stanzas []pgbackrestInfo
	if err := json.Unmarshal([]byte(out), &stanzas); err != nil {
		t.Fatalf("parse pgsidecar info: %v\n%s", err, out)
	}
	if len(stanzas) != 1 || stanzas[0].Name != pgbackrestStanza {
		t.Fatalf("pgsidecar info: want the one stanza %q, got:\n%s", pgbackrestStanza, out)
	}
	return stanzas[0]
}
