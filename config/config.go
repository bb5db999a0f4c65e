package config

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is a resolved and validated configuration. Fields for options that the command does not accept keep their
// zero value, as pgBackRest leaves such options unset.
type Config struct {
	// Command is the command, e.g. "archive-push", "backup" or pgsidecar's "config" and "run".
	Command string
	// Parameters are the command's arguments after the command (e.g. the WAL path of archive-push).
	Parameters []string
	// Stanza is --stanza, or PGO's "db" for a YAML configuration.
	Stanza string
	// Format is "ini" or "yaml" for the main configuration file, "" when none was read.
	Format string
	// Files lists the configuration files read, in order.
	Files []string
	// Projections lists the Secrets and ConfigMaps that a PGO YAML file mounts in conf.d.
	Projections []Projection

	// Repos are the repositories, sorted by index.
	Repos []Repo
	// Pgs are the PostgreSQL hosts, sorted by index.
	Pgs []Pg

	// CompressType is compress-type (none, bz2, gz, lz4, zst).
	CompressType string
	// CompressLevel is compress-level, defaulting per compression type as pgBackRest does (gz 6, lz4 1, zst 3,
	// bz2 9).
	CompressLevel int
	// ProcessMax is process-max.
	ProcessMax int
	// LogLevelConsole, LogLevelFile and LogLevelStderr are log-level-console, log-level-file and log-level-stderr.
	LogLevelConsole string
	LogLevelFile    string
	LogLevelStderr  string

	// ArchiveAsync is archive-async.
	ArchiveAsync bool
	// ArchivePushQueueMax is archive-push-queue-max in bytes; nil when not set.
	ArchivePushQueueMax *int64
	// ArchiveGetQueueMax is archive-get-queue-max in bytes.
	ArchiveGetQueueMax int64
	// ArchiveTimeout is archive-timeout.
	ArchiveTimeout time.Duration
	// ArchiveCheck, ArchiveCopy, ArchiveModeCheck, ArchiveHeaderCheck and ArchiveMissingRetry are the boolean archive
	// options of the same names.
	ArchiveCheck        bool
	ArchiveCopy         bool
	ArchiveModeCheck    bool
	ArchiveHeaderCheck  bool
	ArchiveMissingRetry bool

	// BufferSize is buffer-size in bytes.
	BufferSize int64
	// IOTimeout is io-timeout.
	IOTimeout time.Duration
	// DBTimeout is db-timeout.
	DBTimeout time.Duration

	// Type is --type: full, diff or incr for backup; the recovery type for restore.
	Type string
	// StartFast, Delta, ExpireAuto, BackupStandby, Resume, StopAuto, Online, Force and DryRun are the boolean options
	// of the same names.
	StartFast     bool
	Delta         bool
	ExpireAuto    bool
	BackupStandby bool
	Resume        bool
	StopAuto      bool
	Online        bool
	Force         bool
	DryRun        bool
	// ChecksumPage is checksum-page; nil when not set (pgBackRest then follows the cluster's setting).
	ChecksumPage *bool
	// Exclude is exclude.
	Exclude []string
	// ManifestSaveThreshold is manifest-save-threshold in bytes.
	ManifestSaveThreshold int64
	// Annotation is annotation.
	Annotation map[string]string

	// Set is --set (the backup label to restore, "latest" by default).
	Set string
	// Target, TargetAction, TargetExclusive and TargetTimeline are the recovery target options.
	Target          string
	TargetAction    string
	TargetExclusive bool
	TargetTimeline  string
	// RecoveryOption is recovery-option.
	RecoveryOption map[string]string
	// ArchiveMode is archive-mode (off or preserve).
	ArchiveMode string
	// DBInclude and DBExclude are db-include and db-exclude.
	DBInclude []string
	DBExclude []string
	// LinkAll, LinkMap, TablespaceMap and TablespaceMapAll are the restore mapping options.
	LinkAll          bool
	LinkMap          map[string]string
	TablespaceMap    map[string]string
	TablespaceMapAll string

	// MetricsAddress is metrics-address (pgsidecar's): host:port of the daemon's /metrics and /healthz; "" when off.
	MetricsAddress string

	// RepoSelected is --repo; 0 when not given.
	RepoSelected int
	// Output is --output (text or json; none or text for verify).
	Output string

	options  []Option
	ignored  []IgnoredOption
	warnings []string
}

// Repo is one repository (repoN-* options).
type Repo struct {
	// Index is N of repoN.
	Index int
	// Type is posix, s3, gcs, azure or cifs.
	Type string
	// Path is repoN-path.
	Path string

	S3        S3
	GCS       GCS
	Azure     Azure
	Storage   Storage
	Cipher    Cipher
	Retention Retention
	// Schedules are PGO's backup schedules for the repository (YAML only).
	Schedules Schedules

	// Bundle, BundleSize, BundleLimit, Block and Hardlink are the backup layout options.
	Bundle      bool
	BundleSize  int64
	BundleLimit int64
	Block       bool
	Hardlink    bool
}

// Name returns "repoN".
func (r Repo) Name() string { return "repo" + strconv.Itoa(r.Index) }

// S3 holds repoN-s3-* options.
type S3 struct {
	Bucket    string
	Endpoint  string
	Region    string
	Key       Secret
	KeySecret Secret
	Token     Secret
	// KeyType is shared, auto or web-id.
	KeyType string
	// URIStyle is host or path.
	URIStyle string
	KMSKeyID string
	Role     string
}

// GCS holds repoN-gcs-* options.
type GCS struct {
	Bucket   string
	Endpoint string
	// Key is the service key file or the token, depending on KeyType.
	Key Secret
	// KeyType is auto, service or token.
	KeyType string
}

// Azure holds repoN-azure-* options. pgBackRest treats the account as secure, so it is a Secret too.
type Azure struct {
	Account   Secret
	Container string
	Key       Secret
	// KeyType is shared or sas.
	KeyType  string
	Endpoint string
	// URIStyle is host or path.
	URIStyle string
}

// Storage holds repoN-storage-* options shared by the object stores.
type Storage struct {
	Host            string
	Port            int
	VerifyTLS       bool
	CAFile          string
	CAPath          string
	UploadChunkSize int64
}

// Cipher holds repoN-cipher-type and repoN-cipher-pass.
type Cipher struct {
	// Type is none or aes-256-cbc.
	Type string
	Pass Secret
}

// Retention holds repoN-retention-* options; a zero count means not set (pgBackRest's minimum is 1).
type Retention struct {
	Full int
	// FullType is count or time.
	FullType string
	Diff     int
	// Archive is repo-retention-archive, derived from Full or Diff when not set, as pgBackRest does.
	Archive int
	// ArchiveType is full, diff or incr.
	ArchiveType string
	// History is repo-retention-history in days; nil when not set.
	History *int
}

// Pg is one PostgreSQL host (pgN-* options).
type Pg struct {
	Index      int
	Path       string
	Port       int
	SocketPath string
	User       string
	Database   string
	// Host is pgN-host: a remote host, which pgsidecar does not support (see Ignored).
	Host string
}

// Option is one resolved option. The value of a secure option is never held here: it reads "<redacted>".
type Option struct {
	// Name is the canonical name with its index, e.g. repo1-path.
	Name string
	// Group is "repo", "pg" or "" and Index the index within it (0 outside a group).
	Group string
	Index int
	// Value is the value as pgBackRest displays it; lists and hashes join their values with ", ".
	Value string
	// Values are the values of a list or hash option.
	Values []string
	// Secure marks options whose value is redacted.
	Secure bool
	// Negated is set for a non-boolean option negated on the command line (--no-config).
	Negated bool
	Source  Source
	// Unused, when not empty, says why pgsidecar does nothing with the option.
	Unused string
}

// IgnoredOption is an option that was accepted but has no effect.
type IgnoredOption struct {
	Name   string
	Source Source
	Reason string
}

// Options returns every option that has a value, given or default: options outside a group by name, then each
// repository, then each PostgreSQL host.
func (c *Config) Options() []Option { return slices.Clone(c.options) }

// Option returns the resolved option name (e.g. "repo1-path" or "compress-type").
func (c *Config) Option(name string) (Option, bool) {
	for _, o := range c.options {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

// Ignored returns the options that were accepted but have no effect: options pgsidecar has no use for, and options
// pgBackRest would skip (not valid for the command, a stanza option in a global section, a command-line option in a
// file, an option whose dependency is not met).
func (c *Config) Ignored() []IgnoredOption { return slices.Clone(c.ignored) }

// Warnings returns pgBackRest's configuration warnings (retention not set, deprecated options).
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// Repo returns repository index, if configured.
func (c *Config) Repo(index int) (Repo, bool) {
	for _, r := range c.Repos {
		if r.Index == index {
			return r, true
		}
	}
	return Repo{}, false
}

// build fills cfg from the resolved options.
func (l *loader) build(cfg *Config) {
	v := valueReader{l: l}
	cfg.Stanza = v.str("stanza", 0)
	cfg.Format = l.format
	cfg.Files = l.files
	if l.yaml != nil {
		cfg.Projections = l.yaml.projections
	}
	cfg.CompressType = v.str("compress-type", 0)
	cfg.CompressLevel = int(v.int("compress-level", 0))
	cfg.ProcessMax = int(v.int("process-max", 0))
	cfg.LogLevelConsole = v.str("log-level-console", 0)
	cfg.LogLevelFile = v.str("log-level-file", 0)
	cfg.LogLevelStderr = v.str("log-level-stderr", 0)
	cfg.ArchiveAsync = v.bool("archive-async", 0)
	if r := l.get("archive-push-queue-max", 0); r.usable() {
		n := r.i
		cfg.ArchivePushQueueMax = &n
	}
	cfg.ArchiveGetQueueMax = v.int("archive-get-queue-max", 0)
	cfg.MetricsAddress = v.str("metrics-address", 0)
	cfg.ArchiveTimeout = v.dur("archive-timeout", 0)
	cfg.ArchiveCheck = v.bool("archive-check", 0)
	cfg.ArchiveCopy = v.bool("archive-copy", 0)
	cfg.ArchiveModeCheck = v.bool("archive-mode-check", 0)
	cfg.ArchiveHeaderCheck = v.bool("archive-header-check", 0)
	cfg.ArchiveMissingRetry = v.bool("archive-missing-retry", 0)
	cfg.BufferSize = v.int("buffer-size", 0)
	cfg.IOTimeout = v.dur("io-timeout", 0)
	cfg.DBTimeout = v.dur("db-timeout", 0)
	cfg.Type = v.str("type", 0)
	cfg.StartFast = v.bool("start-fast", 0)
	cfg.Delta = v.bool("delta", 0)
	cfg.ExpireAuto = v.bool("expire-auto", 0)
	cfg.BackupStandby = v.bool("backup-standby", 0)
	cfg.Resume = v.bool("resume", 0)
	cfg.StopAuto = v.bool("stop-auto", 0)
	cfg.Online = v.bool("online", 0)
	cfg.Force = v.bool("force", 0)
	cfg.DryRun = v.bool("dry-run", 0)
	if r := l.get("checksum-page", 0); r.usable() {
		b := r.b
		cfg.ChecksumPage = &b
	}
	cfg.Exclude = v.list("exclude", 0)
	cfg.ManifestSaveThreshold = v.int("manifest-save-threshold", 0)
	cfg.Annotation = v.hash("annotation", 0)
	cfg.Set = v.str("set", 0)
	cfg.Target = v.str("target", 0)
	cfg.TargetAction = v.str("target-action", 0)
	cfg.TargetExclusive = v.bool("target-exclusive", 0)
	cfg.TargetTimeline = v.str("target-timeline", 0)
	cfg.RecoveryOption = v.hash("recovery-option", 0)
	cfg.ArchiveMode = v.str("archive-mode", 0)
	cfg.DBInclude = v.list("db-include", 0)
	cfg.DBExclude = v.list("db-exclude", 0)
	cfg.LinkAll = v.bool("link-all", 0)
	cfg.LinkMap = v.hash("link-map", 0)
	cfg.TablespaceMap = v.hash("tablespace-map", 0)
	cfg.TablespaceMapAll = v.str("tablespace-map-all", 0)
	cfg.RepoSelected = int(v.int("repo", 0))
	cfg.Output = v.str("output", 0)

	if l.groupsValid[groupRepo] {
		for _, k := range l.groupKeys[groupRepo] {
			r := Repo{
				Index: k,
				Type:  v.str("repo-type", k),
				Path:  v.str("repo-path", k),
				S3: S3{
					Bucket: v.str("repo-s3-bucket", k), Endpoint: v.str("repo-s3-endpoint", k),
					Region: v.str("repo-s3-region", k), Key: Secret(v.str("repo-s3-key", k)),
					KeySecret: Secret(v.str("repo-s3-key-secret", k)), Token: Secret(v.str("repo-s3-token", k)),
					KeyType: v.str("repo-s3-key-type", k), URIStyle: v.str("repo-s3-uri-style", k),
					KMSKeyID: v.str("repo-s3-kms-key-id", k), Role: v.str("repo-s3-role", k),
				},
				GCS: GCS{
					Bucket: v.str("repo-gcs-bucket", k), Endpoint: v.str("repo-gcs-endpoint", k),
					Key: Secret(v.str("repo-gcs-key", k)), KeyType: v.str("repo-gcs-key-type", k),
				},
				Azure: Azure{
					Account: Secret(v.str("repo-azure-account", k)), Container: v.str("repo-azure-container", k),
					Key: Secret(v.str("repo-azure-key", k)), KeyType: v.str("repo-azure-key-type", k),
					Endpoint: v.str("repo-azure-endpoint", k), URIStyle: v.str("repo-azure-uri-style", k),
				},
				Storage: Storage{
					Host: v.str("repo-storage-host", k), Port: int(v.int("repo-storage-port", k)),
					VerifyTLS: v.bool("repo-storage-verify-tls", k), CAFile: v.str("repo-storage-ca-file", k),
					CAPath: v.str("repo-storage-ca-path", k), UploadChunkSize: v.int("repo-storage-upload-chunk-size", k),
				},
				Cipher: Cipher{Type: v.str("repo-cipher-type", k), Pass: Secret(v.str("repo-cipher-pass", k))},
				Retention: Retention{
					Full: int(v.int("repo-retention-full", k)), FullType: v.str("repo-retention-full-type", k),
					Diff: int(v.int("repo-retention-diff", k)), Archive: int(v.int("repo-retention-archive", k)),
					ArchiveType: v.str("repo-retention-archive-type", k),
				},
				Bundle:      v.bool("repo-bundle", k),
				BundleSize:  v.int("repo-bundle-size", k),
				BundleLimit: v.int("repo-bundle-limit", k),
				Block:       v.bool("repo-block", k),
				Hardlink:    v.bool("repo-hardlink", k),
			}
			if h := l.get("repo-retention-history", k); h.usable() {
				n := int(h.i)
				r.Retention.History = &n
			}
			if l.yaml != nil {
				r.Schedules = l.yaml.schedules[k]
			}
			cfg.Repos = append(cfg.Repos, r)
		}
	}
	// Unlike repo1, which always exists, a pg index made only of defaults (no pg option set) is left out.
	if l.groupsValid[groupPg] && l.groupSet(groupPg) {
		for _, k := range l.groupKeys[groupPg] {
			cfg.Pgs = append(cfg.Pgs, Pg{
				Index: k, Path: v.str("pg-path", k), Port: int(v.int("pg-port", k)),
				SocketPath: v.str("pg-socket-path", k), User: v.str("pg-user", k),
				Database: v.str("pg-database", k), Host: v.str("pg-host", k),
			})
		}
	}
	cfg.options = l.optionList()
	cfg.ignored = l.ignored
	cfg.warnings = l.warnings
}

// groupSet reports whether any option of group g was given (not a default).
func (l *loader) groupSet(g group) bool {
	for k, rv := range l.found {
		if rv.ref.opt.group == g && !rv.reset && slices.Contains(l.groupKeys[g], k.key) {
			return true
		}
	}
	return false
}

// optionList returns the options with a value, sorted for display.
func (l *loader) optionList() []Option {
	var out []Option
	for _, r := range l.resolved {
		if !l.t.valid(l.cmd, r.def) || !l.inUse(r) || r.invalid || r.unknown || !(r.set || r.negated) {
			continue
		}
		o := Option{
			Name: r.name(), Group: r.def.group.prefix(), Secure: r.def.secure, Negated: r.negated,
			Source: r.src, Value: r.display, Values: slices.Clone(r.values), Unused: r.def.unused,
		}
		if r.def.group != groupNone {
			o.Index = r.key
		}
		if o.Secure {
			o.Value = redacted
			for i := range o.Values {
				o.Values[i] = redacted
			}
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Option) int {
		ga, gb := groupRank(a.Group), groupRank(b.Group)
		if ga != gb {
			return ga - gb
		}
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// groupRank orders groups for display: global options, then repositories, then PostgreSQL hosts.
func groupRank(g string) int {
	switch g {
	case "repo":
		return 1
	case "pg":
		return 2
	}
	return 0
}

// valueReader reads typed values of resolved options; unset and unusable options give zero values.
type valueReader struct{ l *loader }

func (v valueReader) str(name string, key int) string {
	if r := v.l.get(name, key); r.usable() {
		return r.display
	}
	return ""
}

func (v valueReader) bool(name string, key int) bool {
	r := v.l.get(name, key)
	return r.usable() && r.b
}

func (v valueReader) int(name string, key int) int64 {
	if r := v.l.get(name, key); r.usable() {
		return r.i
	}
	return 0
}

func (v valueReader) dur(name string, key int) time.Duration {
	if r := v.l.get(name, key); r.usable() {
		return r.d
	}
	return 0
}

func (v valueReader) list(name string, key int) []string {
	if r := v.l.get(name, key); r.usable() {
		return slices.Clone(r.values)
	}
	return nil
}

func (v valueReader) hash(name string, key int) map[string]string {
	if r := v.l.get(name, key); r.usable() {
		return maps.Clone(r.hash)
	}
	return nil
}
