package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/agent"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
)

// TestLeaseFileToleratedByPgbackrest leaves a backup lease
// (backup/<stanza>/pgsidecar.lease, as the daemon's backup queue writes it
// while a backup runs) in a posix repository with two full backups, and checks
// that stock pgbackrest info, verify and expire, and pgsidecar's info, verify,
// expire and backup, all work around it and that none of them removes it.
func TestLeaseFileToleratedByPgbackrest(t *testing.T) {
	t.Parallel()
	u := requirePostgres(t)
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"})
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand()})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
	c.Pgbench(t, "-i", "-s", "1", "-q")
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")
	c.Pgbench(t, "-n", "-c", "2", "-t", "50")
	c.SwitchWAL(t)
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "--no-expire-auto", "backup")

	lease := filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza, "pgsidecar.lease")
	content := `{"holder":"other-pod/42/0123456789abcdef","acquired":"` + time.Now().UTC().Format(time.RFC3339) +
		`","expires":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	writeFileAs(t, u, lease, []byte(content))
	leaseThere := func(after string) {
		t.Helper()
		b, err := os.ReadFile(lease)
		if err != nil || string(b) != content {
			t.Fatalf("after %s: lease file %q, %v", after, b, err)
		}
	}

	info := pgbackrestInfoJSON(t, cfg.Path)
	if info.Status.Code != 0 || len(info.Backup) != 2 {
		t.Fatalf("pgbackrest info with a lease file: status %d %s, %d backups", info.Status.Code, info.Status.Message, len(info.Backup))
	}
	if rep := pgbackrestVerify(t, cfg.Path); rep.Status != "ok" {
		t.Fatalf("pgbackrest verify with a lease file: %s\n%s", rep.Status, rep.Text)
	}
	leaseThere("pgbackrest info and verify")

	pgbackrestRun(t, cfg.Path, stanza, "--repo1-retention-full=1", "expire")
	leaseThere("pgbackrest expire")
	if info := pgbackrestInfoJSON(t, cfg.Path); len(info.Backup) != 1 {
		t.Fatalf("pgbackrest expire kept %d backups, want 1", len(info.Backup))
	}

	pgsidecarRun(t, cfg.Path, stanza, "--repo1-retention-full=1", "expire")
	leaseThere("pgsidecar expire")
	pgsidecarRun(t, cfg.Path, stanza, "verify")
	requireSameInfo(t, cfg.Path)
	c.Pgbench(t, "-n", "-c", "2", "-t", "50")
	pgsidecarRun(t, cfg.Path, stanza, "--type=diff", "--repo1-retention-full=1", "backup")
	leaseThere("pgsidecar backup with expire-auto")
	if info := pgbackrestInfoJSON(t, cfg.Path); len(info.Backup) != 2 || info.Backup[1].Type != "diff" {
		t.Fatalf("after a diff: %d backups", len(info.Backup))
	}
	if rep := pgbackrestVerify(t, cfg.Path); rep.Status != "ok" {
		t.Fatalf("pgbackrest verify after the diff: %s\n%s", rep.Status, rep.Text)
	}
}

// TestQueueBackupsToPosixAndS3 runs the daemon's backup queue in process
// with agent.Backup as the run function: full backups to repo1 (posix) and
// repo2 (MinIO) of a running cluster are submitted at the same moment as
// one-off requests. Both succeed, one after the other (at once, the second
// would fail on the cluster's backup lock), each under its repository's
// lease, which is gone afterwards.
func TestQueueBackupsToPosixAndS3(t *testing.T) {
	t.Parallel()
	u := requirePostgres(t)
	svc, bucket := newS3Bucket(t)
	c := newCluster(t, clusterOptions{})
	c.Start(t)
	c.Pgbench(t, "-i", "-s", "1", "-q")
	dir := t.TempDir()
	posixRepo := filepath.Join(newWorkDir(t, u, "queue"), "repo")
	conf := filepath.Join(dir, "pgbackrest.conf")
	ini := "[global]\nstart-fast=y\narchive-check=n\ncompress-type=zst\nrepo1-type=posix\nrepo1-path=" + posixRepo +
		"\nrepo2-path=/pgbackrest/repo2\n" + strings.Join(svc.repoOptions(2, bucket), "\n") +
		"\n[" + pgbackrestStanza + "]\npg1-path=" + c.DataDir() + "\npg1-socket-path=" + c.SocketDir() +
		"\npg1-port=" + strconv.Itoa(c.Port()) + "\npg1-user=" + pgSuperuser + "\n"
	if err := os.WriteFile(conf, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	load := func(command string) (*config.Config, []agent.Repo) {
		cfg, err := config.Load(config.Input{Args: []string{"--config=" + conf, "--config-include-path=" + filepath.Join(dir, "conf.d"),
			"--stanza=" + pgbackrestStanza, command}})
		if err != nil {
			t.Fatal(err)
		}
		repos, err := agent.OpenRepos(t.Context(), cfg, agent.Deps{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = agent.CloseRepos(repos) })
		return cfg, repos
	}
	createCfg, createRepos := load("stanza-create")
	if err := agent.StanzaCreate(t.Context(), createCfg, createRepos, log); err != nil {
		t.Fatalf("stanza-create: %v", err)
	}
	cfg, repos := load("backup")
	holder, err := agent.NewHolderID("it", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	backup := agent.NewBackupRunner(cfg, repos, log)
	var inFlight, maxInFlight atomic.Int32
	q := agent.NewBackupQueue(agent.QueueOptions{
		Run: func(ctx context.Context, req agent.BackupRequest, progress func(done, total uint64)) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
			return backup(ctx, req, progress)
		},
		IsPrimary: agent.NewPrimaryCheck(cfg),
		Lease:     agent.NewLeases(cfg.Stanza, repos, agent.LeaseConfig{Holder: holder, Log: log}),
		Log:       log,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ch := q.Submit(agent.BackupRequest{Repo: i + 1, Type: "full", Source: agent.SourceOneOff})
			errs[i] = (<-ch).Err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("backup to repo%d: %v", i+1, err)
		}
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d backups ran at once", m)
	}
	var spans [][2]int64
	for _, r := range repos {
		rs := repo.Open(r.Store, r.Name(), cfg.Stanza, "")
		bi, err := rs.LoadBackupInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(bi.Backups) != 1 || bi.Backups[0].Type != repo.BackupFull {
			t.Fatalf("%s: backups %+v", r.Name(), bi.Backups)
		}
		spans = append(spans, [2]int64{bi.Backups[0].TimestampStart, bi.Backups[0].TimestampStop})
		if ok, err := rs.Exists(t.Context(), rs.BackupKey(agent.LeaseFile)); err != nil || ok {
			t.Errorf("%s: lease left behind (%v, %v)", r.Name(), ok, err)
		}
	}
	if !(spans[0][1] <= spans[1][0] || spans[1][1] <= spans[0][0]) {
		t.Fatalf("backups overlap: repo1 %v, repo2 %v", spans[0], spans[1])
	}
}
