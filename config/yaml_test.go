package config_test

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestYAMLRules(t *testing.T) {
	t.Parallel()
	manifest := "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n---\n" +
		"apiVersion: postgres-operator.crunchydata.com/v1beta1\nkind: PostgresCluster\nmetadata:\n  name: hippo\nspec:\n" +
		"  postgresVersion: 15\n  backups:\n    pgbackrest:\n      global:\n" +
		"        repo1-s3-bucket: from-global\n        repo1-retention-full: 7\n        start-fast: true\n" +
		"        archive-timeout: 30.5\n        pg1-path: /ignored\n        repo1-s3-key-type: auto\n" +
		"      repos:\n      - name: repo1\n        s3:\n          bucket: from-repos\n          endpoint: e\n          region: r\n"
	dir := writeTree(t, map[string]string{"postgres.yaml": manifest})
	cfg := mustLoad(t, dir, []string{"--config", filepath.Join(dir, "postgres.yaml"), "backup"})
	r := repo(t, cfg, 1)
	if r.S3.Bucket != "from-global" || r.Retention.Full != 7 || !cfg.StartFast || cfg.ArchiveTimeout.Milliseconds() != 30500 {
		t.Errorf("bucket %q retention %d start-fast %v archive-timeout %v", r.S3.Bucket, r.Retention.Full, cfg.StartFast, cfg.ArchiveTimeout)
	}
	if cfg.Pgs[0].Path != "/pgdata/pg15" {
		t.Errorf("pg1-path = %q: a stanza option in PGO's global section is ignored", cfg.Pgs[0].Path)
	}
	var ignored []string
	for _, i := range cfg.Ignored() {
		ignored = append(ignored, i.Name+": "+i.Reason)
	}
	if !strings.Contains(strings.Join(ignored, "\n"), "pg1-path: stanza option in global section [global]") {
		t.Errorf("ignored = %q", ignored)
	}

	// A conf.d file that sets an option PGO's global section sets too is a duplicate, as with PGO's generated file.
	dir = writeTree(t, map[string]string{
		"postgres.yaml":   "backups:\n  pgbackrest:\n    global:\n      repo1-path: /a\n    repos:\n    - name: repo1\n      volume: {}\n    - name: repo1\n      volume: {}\n",
		"conf.d/dup.conf": "[global]\nrepo1-path=/b\n",
	})
	_, err := load(t, dir, []string{"--config", filepath.Join(dir, "postgres.yaml"), "config"})
	wantErrors(t, err,
		"repo1-path: option cannot be set multiple times in section [global]", "postgres.yaml:4 backups.pgbackrest.global.repo1-path", "dup.conf:2 [global]",
		"backups.pgbackrest.repos[1].name: repository repo1 is defined twice")

	// conf.d is optional with YAML, and a [db] section there overrides PGO's defaults.
	dir = writeTree(t, map[string]string{
		"postgres.yaml":  "backups:\n  pgbackrest:\n    repos:\n    - name: repo2\n      volume: {}\n",
		"conf.d/db.conf": "[db]\npg1-path=/custom\npg1-port=6543\n",
	})
	cfg = mustLoad(t, dir, []string{"--config", filepath.Join(dir, "postgres.yaml"), "backup"})
	if len(cfg.Repos) != 1 || cfg.Repos[0].Index != 2 || cfg.Repos[0].Path != "/pgbackrest/repo2" {
		t.Errorf("repos = %+v", cfg.Repos)
	}
	if pg := cfg.Pgs[0]; pg.Path != "/custom" || pg.Port != 6543 || pg.SocketPath != "/tmp/postgres" {
		t.Errorf("pg1 = %+v", pg)
	}
	wantSource(t, cfg, "pg1-socket-path", "/tmp/postgres", "PGO default")
	wantSource(t, cfg, "pg1-port", "6543", "db.conf:3 [db]")
}
