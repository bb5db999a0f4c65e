package config_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/config"
)

// yamlArgs returns the arguments that load testdata/<dir>/postgres.yaml with command and extra arguments.
func yamlArgs(dir string, rest ...string) []string {
	return append([]string{"--config", filepath.Join("testdata", dir, "postgres.yaml")}, rest...)
}

func TestSeedExamples(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		dir   string
		args  []string
		check func(t *testing.T, cfg *config.Config)
	}{
		{
			name: "repo path from PGO global",
			dir:  "repo-path",
			args: yamlArgs("repo-path", "config"),
			check: func(t *testing.T, cfg *config.Config) {
				r := repo(t, cfg, 1)
				if r.Type != "posix" || r.Path != "/pgbackrest/postgres-operator/hippo/repo1" {
					t.Errorf("repo1 = %s %s", r.Type, r.Path)
				}
				wantSource(t, cfg, "repo1-path", "/pgbackrest/postgres-operator/hippo/repo1",
					"postgres.yaml:6", "spec.backups.pgbackrest.global.repo1-path")
				wantSource(t, cfg, "repo1-type", "posix", "spec.backups.pgbackrest.repos[0].volume")
				if cfg.Stanza != "db" || cfg.Format != "yaml" || len(cfg.Repos) != 1 {
					t.Errorf("stanza %q format %q repos %d", cfg.Stanza, cfg.Format, len(cfg.Repos))
				}
			},
		},
		{
			name: "MinIO with path-style URIs",
			dir:  "minio",
			args: yamlArgs("minio", "archive-push", "/pgdata/pg16/pg_wal/000000010000000000000001"),
			check: func(t *testing.T, cfg *config.Config) {
				r := repo(t, cfg, 1)
				want := config.S3{
					Bucket: "hippo-backups", Endpoint: "minio.minio.svc:9000", Region: "us-east-1",
					Key: "minio-test-access-key", KeySecret: "minio-test-secret-key-9f3a", KeyType: "shared", URIStyle: "path",
				}
				if r.S3 != want {
					t.Errorf("S3 = %+v\nwant %+v", r.S3.Bucket, want.Bucket)
				}
				if r.S3.KeySecret.Value() != "minio-test-secret-key-9f3a" {
					t.Error("s3 key secret not read from conf.d")
				}
				if r.Storage.VerifyTLS {
					t.Error("repo1-storage-verify-tls: false in YAML must disable verification")
				}
				wantSource(t, cfg, "repo1-s3-uri-style", "path", "postgres.yaml:9 backups.pgbackrest.global.repo1-s3-uri-style")
				wantSource(t, cfg, "repo1-storage-verify-tls", "n", "postgres.yaml:10")
				wantSource(t, cfg, "repo1-s3-key-secret", "<redacted>", filepath.Join("conf.d", "s3.conf")+":3 [global]")
				if r.Storage.UploadChunkSize != 5<<20 {
					t.Errorf("upload chunk size default for s3 = %d", r.Storage.UploadChunkSize)
				}
				if !slices.Equal(cfg.Parameters, []string{"/pgdata/pg16/pg_wal/000000010000000000000001"}) {
					t.Errorf("parameters = %q", cfg.Parameters)
				}
				if len(cfg.Projections) != 1 || cfg.Projections[0] != (config.Projection{Kind: "secret", Name: "pgo-s3-creds"}) {
					t.Errorf("projections = %+v", cfg.Projections)
				}
			},
		},
		{
			name: "encryption passphrase from a conf.d Secret",
			dir:  "encryption",
			args: yamlArgs("encryption", "backup"),
			check: func(t *testing.T, cfg *config.Config) {
				r := repo(t, cfg, 1)
				if r.Cipher.Type != "aes-256-cbc" || r.Cipher.Pass.Value() != "your-super-secure-encryption-key-passphrase" {
					t.Errorf("cipher = %s / %d bytes", r.Cipher.Type, len(r.Cipher.Pass.Value()))
				}
				wantSource(t, cfg, "repo1-cipher-type", "aes-256-cbc", "spec.backups.pgbackrest.global.repo1-cipher-type")
				wantSource(t, cfg, "repo1-cipher-pass", "<redacted>", "pgbackrest-secrets.conf:2 [global]")
				wantSource(t, cfg, "repo1-path", "/pgbackrest/repo1", "PGO default", "spec.backups.pgbackrest.repos[0]")
				if got := cfg.Projections; len(got) != 1 || got[0].Name != "hippo-pgbackrest-secrets" || got[0].Kind != "secret" {
					t.Errorf("projections = %+v", got)
				}
				pg := cfg.Pgs[0]
				if pg.Path != "/pgdata/pg16" || pg.Port != 5432 || pg.SocketPath != "/tmp/postgres" || pg.Database != "postgres" {
					t.Errorf("pg1 = %+v", pg)
				}
			},
		},
		{
			name: "whole PostgresCluster manifest",
			dir:  "manifest",
			args: yamlArgs("manifest", "backup"),
			check: func(t *testing.T, cfg *config.Config) {
				pg := cfg.Pgs[0]
				if pg.Index != 1 || pg.Path != "/pgdata/pg15" || pg.Port != 5433 || pg.SocketPath != "/tmp/postgres" {
					t.Errorf("pg1 = %+v", pg)
				}
				wantSource(t, cfg, "pg1-port", "5433", "PGO default", "spec.port")
				wantSource(t, cfg, "pg1-path", "/pgdata/pg15", "spec.postgresVersion")
				if cfg.CompressType != "zst" || cfg.CompressLevel != 3 || cfg.ProcessMax != 4 || !cfg.StartFast {
					t.Errorf("compress %s/%d process-max %d start-fast %v", cfg.CompressType, cfg.CompressLevel, cfg.ProcessMax, cfg.StartFast)
				}
				if cfg.Type != "incr" {
					t.Errorf("backup type default = %q", cfg.Type)
				}
				r := repo(t, cfg, 1)
				if r.Type != "s3" || r.S3.Region != "us-east-2" || r.Retention.Full != 14 || r.Retention.Archive != 14 {
					t.Errorf("repo1 = %s %s full %d archive %d", r.Type, r.S3.Region, r.Retention.Full, r.Retention.Archive)
				}
				if r.Schedules.Full != "0 1 * * 0" || r.Schedules.Incremental != "0 1 * * 1-6" || r.Schedules.Differential != "" {
					t.Errorf("schedules = %+v", r.Schedules)
				}
				if len(cfg.Projections) != 2 || cfg.Projections[1] != (config.Projection{Kind: "configMap", Name: "hippo-pgbackrest-tuning"}) {
					t.Errorf("projections = %+v", cfg.Projections)
				}
			},
		},
		{
			name: "web identity needs no keys",
			dir:  "web-id",
			args: yamlArgs("web-id", "backup"),
			check: func(t *testing.T, cfg *config.Config) {
				r := repo(t, cfg, 1)
				if r.S3.KeyType != "web-id" || r.S3.Key.IsSet() || r.S3.KeySecret.IsSet() {
					t.Errorf("s3 key type %q key set %v", r.S3.KeyType, r.S3.Key.IsSet())
				}
				wantSource(t, cfg, "repo1-s3-key-type", "web-id", filepath.Join("web-id", "conf.d", "s3.conf")+":2 [global]")
			},
		},
		{
			name: "Azure credentials from azure.conf",
			dir:  "azure",
			args: yamlArgs("azure", "config"),
			check: func(t *testing.T, cfg *config.Config) {
				r := repo(t, cfg, 1)
				want := config.Azure{
					Account: "hippoaccount", Container: "hippo-container", Key: "azure-fake-key-Zm9vYmFy==",
					KeyType: "shared", Endpoint: "blob.core.windows.net", URIStyle: "host",
				}
				if r.Type != "azure" || r.Azure != want {
					t.Errorf("repo1 azure %+v", r.Azure.Container)
				}
				wantSource(t, cfg, "repo1-azure-container", "hippo-container", "backups.pgbackrest.repos[0].azure.container")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, mustLoad(t, filepath.Join("testdata", tc.dir), tc.args))
		})
	}
}

// TestFourRepoMix loads the same four repositories from PGO YAML and from pgBackRest INI and expects the same
// repositories.
func TestFourRepoMix(t *testing.T) {
	t.Parallel()
	fromYAML := mustLoad(t, filepath.Join("testdata", "multi-repo-yaml"), yamlArgs("multi-repo-yaml", "backup"))
	fromINI := mustLoad(t, filepath.Join("testdata", "multi-repo-ini"), []string{"--stanza=db", "backup"})
	for _, cfg := range []*config.Config{fromYAML, fromINI} {
		if len(cfg.Repos) != 4 {
			t.Fatalf("%s: %d repos", cfg.Format, len(cfg.Repos))
		}
		var types []string
		for _, r := range cfg.Repos {
			types = append(types, r.Type)
		}
		if !slices.Equal(types, []string{"posix", "s3", "gcs", "azure"}) {
			t.Errorf("%s: types %q", cfg.Format, types)
		}
		if cfg.LogLevelConsole != "info" || cfg.Stanza != "db" || cfg.Pgs[0].Path != "/pgdata/pg16" {
			t.Errorf("%s: log %s stanza %s pg1 %s", cfg.Format, cfg.LogLevelConsole, cfg.Stanza, cfg.Pgs[0].Path)
		}
	}
	for i := range 4 {
		y, n := fromYAML.Repos[i], fromINI.Repos[i]
		y.Schedules, n.Schedules = config.Schedules{}, config.Schedules{}
		if y != n && i > 0 {
			t.Errorf("repo%d differs:\nyaml %+v\nini  %+v", i+1, y.Path, n.Path)
		}
	}
	if p := fromYAML.Repos[0].Path; p != "/pgbackrest/repo1" {
		t.Errorf("yaml repo1 path %q, want PGO's /pgbackrest/repo1", p)
	}
	if r := fromINI.Repos[1]; r.S3.URIStyle != "path" || r.S3.Key.Value() != "multi-s3-access-key" {
		t.Errorf("ini repo2 = %+v", r.S3.Bucket)
	}
	if r := fromYAML.Repos[2]; r.GCS.Bucket != "hippo-gcs" || r.GCS.Key.Value() != "/etc/pgbackrest/conf.d/gcs-key.json" || r.GCS.KeyType != "service" {
		t.Errorf("yaml repo3 gcs %s %s", r.GCS.Bucket, r.GCS.KeyType)
	}
	if s := fromYAML.Repos[3].Schedules; s.Incremental != "0 */4 * * *" {
		t.Errorf("repo4 schedules %+v", s)
	}
	if fromINI.Repos[0].Retention.Full != 14 || fromYAML.Repos[0].Retention.Full != 14 {
		t.Error("repo1-retention-full not read")
	}
	if fromYAML.ArchiveTimeout != 60*time.Second || fromINI.BufferSize != 1<<20 {
		t.Errorf("defaults: archive-timeout %v buffer-size %d", fromYAML.ArchiveTimeout, fromINI.BufferSize)
	}
}
