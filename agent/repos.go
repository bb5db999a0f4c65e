package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/azure"
	"github.com/pgsidecar/pgsidecar/storage/gcs"
	"github.com/pgsidecar/pgsidecar/storage/instrument"
	"github.com/pgsidecar/pgsidecar/storage/posix"
	"github.com/pgsidecar/pgsidecar/storage/retry"
	"github.com/pgsidecar/pgsidecar/storage/s3"
	"github.com/pgsidecar/pgsidecar/storage/timeout"
)

// Repo is one opened repository: its configuration and its store, wrapped
// with timeouts, metrics and retries.
type Repo struct {
	Config config.Repo
	Store  storage.Store
}

// Name returns "repoN".
func (r Repo) Name() string { return r.Config.Name() }

// Deps are the process-wide dependencies the agent is given by cmd.
type Deps struct {
	Log *zap.Logger
	// Registry receives the metrics; nil disables them.
	Registry prometheus.Registerer
	// Gatherer reads them for the daemon's metrics-address endpoint; nil:
	// Registry, when it gathers too.
	Gatherer prometheus.Gatherer
	// Version is the program version, set when the binary was built.
	Version string
	// Env is the process environment (os.Environ()); the agent reads the few
	// variables pgBackRest reads (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)
	// from it, never from the process directly.
	Env []string
	// Reload, when set, lets the daemon (run) read its configuration again
	// on request (SIGHUP).
	Reload *Reloader
}

func (d Deps) getenv(name string) string {
	for _, kv := range d.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// explicit reports whether option name was given rather than defaulted.
func explicit(cfg *config.Config, name string) bool {
	o, ok := cfg.Option(name)
	return ok && o.Source.Kind != config.SourceDefault
}

// openDriver builds the bare driver of repository r.
func openDriver(ctx context.Context, cfg *config.Config, r config.Repo, d Deps) (storage.Store, error) {
	prefix := strings.Trim(r.Path, "/")
	name := r.Name()
	port := 0
	if explicit(cfg, name+"-storage-port") {
		port = r.Storage.Port
	}
	switch r.Type {
	case "posix", "cifs", "":
		return posix.New(posix.Config{Root: r.Path})
	case "s3":
		return s3.New(ctx, s3.Config{
			Repo: r.Index, Bucket: r.S3.Bucket, Endpoint: r.S3.Endpoint, Region: r.S3.Region,
			Prefix: prefix, URIStyle: r.S3.URIStyle, KeyType: r.S3.KeyType,
			Key: r.S3.Key.Value(), KeySecret: r.S3.KeySecret.Value(), Token: r.S3.Token.Value(),
			WebIdentityRoleARN: d.getenv("AWS_ROLE_ARN"), WebIdentityTokenFile: d.getenv("AWS_WEB_IDENTITY_TOKEN_FILE"),
			Host: r.Storage.Host, Port: port, VerifyTLS: r.Storage.VerifyTLS,
			CAFile: r.Storage.CAFile, CAPath: r.Storage.CAPath,
			PartSize: r.Storage.UploadChunkSize, KMSKeyID: r.S3.KMSKeyID, Role: r.S3.Role,
		})
	case "gcs":
		return gcs.New(ctx, gcs.Config{
			Repo: r.Index, Bucket: r.GCS.Bucket, Prefix: prefix, Endpoint: r.GCS.Endpoint,
			KeyType: r.GCS.KeyType, Key: r.GCS.Key.Value(), VerifyTLS: r.Storage.VerifyTLS,
			CAFile: r.Storage.CAFile, CAPath: r.Storage.CAPath, ChunkSize: int(r.Storage.UploadChunkSize),
		})
	case "azure":
		return azure.New(ctx, azure.Config{
			Repo: r.Index, Account: r.Azure.Account.Value(), Container: r.Azure.Container, Prefix: prefix,
			Endpoint: r.Azure.Endpoint, URIStyle: r.Azure.URIStyle, KeyType: r.Azure.KeyType,
			Key: r.Azure.Key.Value(), Host: r.Storage.Host, Port: port, VerifyTLS: r.Storage.VerifyTLS,
			CAFile: r.Storage.CAFile, BlockSize: r.Storage.UploadChunkSize,
		})
	}
	return nil, fmt.Errorf("%s-type=%s: not supported by pgsidecar", name, r.Type)
}

// wrap composes the decorators around a driver, in the one order used
// everywhere: retry(instrument(timeout(driver))), so that metrics count each
// attempt and a stalled attempt is cancelled, then retried.
func wrap(s storage.Store, r config.Repo, ioTimeout time.Duration, m *instrument.Metrics, log *zap.Logger) storage.Store {
	s = timeout.New(s, timeout.Config{Timeout: ioTimeout, Stall: ioTimeout})
	if m != nil {
		s = instrument.New(s, m, r.Name(), r.Type)
	}
	return retry.New(s, retry.Config{OnRetry: func(op, key string, attempt int, err error) {
		log.Warn("retrying storage call", zap.String("repo", r.Name()), zap.String("op", op),
			zap.String("key", key), zap.Int("attempt", attempt), zap.Error(err))
	}})
}

// OpenRepos opens every configured repository, or only --repo when given.
// It reports every repository that fails to open, at once.
func OpenRepos(ctx context.Context, cfg *config.Config, d Deps) ([]Repo, error) {
	var m *instrument.Metrics
	if d.Registry != nil {
		var err error
		if m, err = instrument.NewMetrics(d.Registry); err != nil {
			return nil, fmt.Errorf("register storage metrics: %w", err)
		}
	}
	var repos []Repo
	var errs []error
	for _, r := range cfg.Repos {
		if cfg.RepoSelected != 0 && r.Index != cfg.RepoSelected {
			continue
		}
		s, err := openDriver(ctx, cfg, r, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("open %s (%s): %w", r.Name(), r.Type, err))
			continue
		}
		repos = append(repos, Repo{Config: r, Store: wrap(s, r, cfg.IOTimeout, m, d.Log)})
	}
	if err := errors.Join(errs...); err != nil {
		for _, r := range repos {
			_ = r.Store.Close()
		}
		return nil, err
	}
	if len(repos) == 0 && cfg.RepoSelected != 0 {
		return nil, fmt.Errorf("--repo=%d: repo%d is not configured", cfg.RepoSelected, cfg.RepoSelected)
	}
	return repos, nil
}

// CloseRepos closes every store.
func CloseRepos(repos []Repo) error {
	var errs []error
	for _, r := range repos {
		if err := r.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", r.Name(), err))
		}
	}
	return errors.Join(errs...)
}
