package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Projection is one entry of PGO's spec.backups.pgbackrest.configuration: a Secret or ConfigMap (or another volume
// projection) whose files PGO mounts in /etc/pgbackrest/conf.d.
type Projection struct {
	// Kind is the projection field: "secret", "configMap", "downwardAPI", "serviceAccountToken" or
	// "clusterTrustBundle".
	Kind string
	// Name is the Secret's or ConfigMap's name ("" for kinds without one).
	Name string
}

// Schedules holds the cron schedules PGO's repos[].schedules give for a repository. Each is a 5-field cron string
// (or a descriptor such as @daily, which Kubernetes CronJobs and PGO accept); "" means no schedule.
type Schedules struct {
	Full         string
	Differential string
	Incremental  string
	// Source locates the schedules in the YAML file.
	Source Source
}

// PGO's settings for the PostgreSQL instance, from internal/pgbackrest/config.go and internal/postgres.
const (
	pgoStanza     = "db"
	pgoRepoPath   = "/pgbackrest/"
	pgoSocketPath = "/tmp/postgres"
	pgoDataPrefix = "/pgdata/pg"
	pgoPort       = "5432"
)

// yamlConfig is what a PGO YAML file contributes.
type yamlConfig struct {
	// entries are settings of the global section: the global map and the options derived from repos.
	entries []entry
	// defaults are PGO's defaults, applied only when no other source sets the option.
	defaults []entry
	// schedules by repository index.
	schedules   map[int]Schedules
	projections []Projection
	errs        []error
}

// yamlNode wraps a node with its path for messages.
type yamlNode struct {
	n    *yaml.Node
	path string
}

// at renders a node's location.
func (y *yamlParser) at(n yamlNode) string {
	return fmt.Sprintf("%s:%d %s", y.file, n.n.Line, n.path)
}

// yamlParser holds the state of one YAML parse.
type yamlParser struct {
	file string
	t    *table
	out  *yamlConfig
}

// errorf records an error located at n.
func (y *yamlParser) errorf(n yamlNode, format string, args ...any) {
	y.out.errs = append(y.out.errs, fmt.Errorf("%s: %s", y.at(n), fmt.Sprintf(format, args...)))
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields returns the key/value pairs of a mapping, or reports that n is not a mapping.
func (y *yamlParser) fields(n yamlNode) ([]string, []yamlNode, bool) {
	m := deref(n.n)
	if m == nil || m.Kind != yaml.MappingNode {
		if m != nil && m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
			return nil, nil, true
		}
		y.errorf(n, "must be a mapping")
		return nil, nil, false
	}
	var keys []string
	var vals []yamlNode
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := deref(m.Content[i]).Value
		keys = append(keys, k)
		vals = append(vals, yamlNode{n: deref(m.Content[i+1]), path: n.path + "." + k})
	}
	return keys, vals, true
}

// field returns the value of key in mapping n.
func (y *yamlParser) field(n yamlNode, key string) (yamlNode, bool) {
	m := deref(n.n)
	if m == nil || m.Kind != yaml.MappingNode {
		return yamlNode{}, false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if deref(m.Content[i]).Value == key {
			return yamlNode{n: deref(m.Content[i+1]), path: joinPath(n.path, key)}, true
		}
	}
	return yamlNode{}, false
}

// joinPath appends key to a YAML path.
func joinPath(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}

// scalar returns the text of a scalar node, rendering booleans as y/n. ok is false (and an error recorded) for
// anything but a scalar.
func (y *yamlParser) scalar(n yamlNode) (string, bool) {
	if n.n.Kind != yaml.ScalarNode {
		y.errorf(n, "must be a string, integer or boolean")
		return "", false
	}
	switch n.n.Tag {
	case "!!bool":
		var b bool
		if err := n.n.Decode(&b); err != nil {
			y.errorf(n, "invalid boolean")
			return "", false
		}
		return formatBool(b), true
	case "!!null":
		return "", true
	}
	return n.n.Value, true
}

// pgbackrestKeys are the fields of PGO's PGBackRestArchive; those not read here are accepted and ignored.
func pgbackrestKeys() []string {
	return []string{"configuration", "global", "image", "jobs", "manual", "metadata", "repoHost", "repos", "restore", "sidecars"}
}

// parseYAML reads a PGO YAML file: a PostgresCluster manifest (several documents are allowed; the PostgresCluster is
// used), a spec fragment, or a file holding backups.pgbackrest.
func parseYAML(data []byte, file string, t *table) *yamlConfig {
	y := &yamlParser{file: file, t: t, out: &yamlConfig{schedules: map[int]Schedules{}}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			y.out.errs = append(y.out.errs, fmt.Errorf("%s: parse yaml: %s", file, yamlErrorText(err)))
			return y.out
		}
		if len(doc.Content) > 0 {
			docs = append(docs, deref(doc.Content[0]))
		}
	}
	var spec yamlNode
	var found int
	for _, d := range docs {
		n := yamlNode{n: d}
		if kind, ok := y.field(n, "kind"); ok {
			if kind.n.Value != "PostgresCluster" {
				continue
			}
			s, ok := y.field(n, "spec")
			if !ok {
				y.errorf(n, "PostgresCluster has no spec")
				return y.out
			}
			spec = s
			found++
			continue
		}
		if s, ok := y.field(n, "spec"); ok {
			spec = s
			found++
			continue
		}
		if _, ok := y.field(n, "backups"); ok {
			spec = n
			found++
		}
	}
	switch {
	case found == 0:
		y.out.errs = append(y.out.errs, fmt.Errorf(
			"%s: yaml holds neither a PostgresCluster manifest nor backups.pgbackrest", file))
		return y.out
	case found > 1:
		y.out.errs = append(y.out.errs, fmt.Errorf("%s: yaml holds more than one PostgresCluster", file))
		return y.out
	}
	backups, ok := y.field(spec, "backups")
	if !ok {
		y.errorf(spec, "has no backups.pgbackrest section")
		return y.out
	}
	pgb, ok := y.field(backups, "pgbackrest")
	if !ok {
		y.errorf(backups, "has no pgbackrest section")
		return y.out
	}
	y.pgbackrest(pgb)
	y.instanceDefaults(spec)
	return y.out
}

// yamlErrorText returns a yaml.v3 error without the offending content (which may be a secret).
func yamlErrorText(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return "unexpected structure"
	}
	msg := err.Error()
	// yaml.v3 syntax errors look like "yaml: line 3: mapping values are not allowed in this context"; they quote no
	// content except in "found character that cannot start any token", which names one character only.
	return strings.TrimPrefix(msg, "yaml: ")
}

// pgbackrest reads spec.backups.pgbackrest.
func (y *yamlParser) pgbackrest(n yamlNode) {
	keys, vals, ok := y.fields(n)
	if !ok {
		return
	}
	var global, repos, configuration *yamlNode
	for i, k := range keys {
		switch k {
		case "global":
			global = &vals[i]
		case "repos":
			repos = &vals[i]
		case "configuration":
			configuration = &vals[i]
		default:
			if !slices.Contains(pgbackrestKeys(), k) {
				y.errorf(vals[i], "unknown field %q", k)
			}
		}
	}
	set := map[optKey]bool{}
	if global != nil {
		gk, gv, ok := y.fields(*global)
		if ok {
			for i, k := range gk {
				v, ok := y.scalar(gv[i])
				if !ok {
					continue
				}
				y.out.entries = append(y.out.entries, entry{
					section: "global", key: k, value: v,
					src: Source{Kind: SourceYAML, Name: k, File: y.file, Line: gv[i].n.Line, Section: "global", Path: gv[i].path},
				})
				if ref, err := y.t.lookup(k, false); err == nil {
					set[optKey{ref.opt.name, ref.key}] = true
				}
			}
		}
	}
	if configuration != nil {
		y.configuration(*configuration)
	}
	if repos == nil {
		y.errorf(n, "repos: at least one repository is required")
		return
	}
	y.repos(*repos, set)
}

// configuration records the projections of spec.backups.pgbackrest.configuration.
func (y *yamlParser) configuration(n yamlNode) {
	if n.n.Kind != yaml.SequenceNode {
		y.errorf(n, "must be a list")
		return
	}
	for i, item := range n.n.Content {
		in := yamlNode{n: deref(item), path: fmt.Sprintf("%s[%d]", n.path, i)}
		keys, vals, ok := y.fields(in)
		if !ok {
			continue
		}
		for j, k := range keys {
			p := Projection{Kind: k}
			if name, ok := y.field(vals[j], "name"); ok {
				p.Name = name.n.Value
			}
			y.out.projections = append(y.out.projections, p)
		}
	}
}

// repoName matches PGO's repository names that pgsidecar supports.
func repoNameRE() *regexp.Regexp { return regexp.MustCompile(`^repo([1-9][0-9]*)$`) }

// repos reads spec.backups.pgbackrest.repos. set holds the options the global map sets; PGO lets those win.
func (y *yamlParser) repos(n yamlNode, set map[optKey]bool) {
	if n.n.Kind != yaml.SequenceNode {
		y.errorf(n, "must be a list")
		return
	}
	if len(n.n.Content) == 0 {
		y.errorf(n, "at least one repository is required")
		return
	}
	seen := map[int]string{}
	re := repoNameRE()
	for i, item := range n.n.Content {
		rn := yamlNode{n: deref(item), path: fmt.Sprintf("%s[%d]", n.path, i)}
		keys, vals, ok := y.fields(rn)
		if !ok {
			continue
		}
		var name *yamlNode
		var storage []int
		var schedules *yamlNode
		for j, k := range keys {
			switch k {
			case "name":
				name = &vals[j]
			case "volume", "s3", "gcs", "azure":
				storage = append(storage, j)
			case "schedules":
				schedules = &vals[j]
			default:
				y.errorf(vals[j], "unknown field %q", k)
			}
		}
		if name == nil {
			y.errorf(rn, "name is required (repo1 to repo%d)", maxRepo)
			continue
		}
		m := re.FindStringSubmatch(name.n.Value)
		if m == nil {
			y.errorf(*name, "%q is not a repository name (repo1 to repo%d)", name.n.Value, maxRepo)
			continue
		}
		key, _ := strconv.Atoi(m[1])
		if key > maxRepo {
			y.errorf(*name, "%s: pgsidecar supports repo1 to repo%d", name.n.Value, maxRepo)
			continue
		}
		if prev, dup := seen[key]; dup {
			y.errorf(*name, "repository %s is defined twice (also at %s)", name.n.Value, prev)
			continue
		}
		seen[key] = rn.path
		prefix := name.n.Value
		if schedules != nil {
			y.schedules(*schedules, key)
		}
		// PGO's default path for every repository; the global map or any other source overrides it.
		y.out.defaults = append(y.out.defaults, entry{
			section: "global", key: prefix + "-path", value: pgoRepoPath + prefix,
			src: Source{Kind: SourcePGO, Name: prefix + "-path", File: y.file, Line: name.n.Line, Path: rn.path},
		})
		switch len(storage) {
		case 0:
			y.errorf(rn, "%s has no storage: one of volume, s3, gcs or azure is required", prefix)
			continue
		case 1:
		default:
			var kinds []string
			for _, j := range storage {
				kinds = append(kinds, keys[j])
			}
			y.errorf(rn, "%s has %d storage types (%s): exactly one of volume, s3, gcs or azure is allowed",
				prefix, len(kinds), strings.Join(kinds, ", "))
			continue
		}
		kind, sn := keys[storage[0]], vals[storage[0]]
		add := func(opt, value string, at yamlNode) {
			ref, err := y.t.lookup(prefix+"-"+opt, false)
			if err == nil && set[optKey{ref.opt.name, ref.key}] {
				return
			}
			y.out.entries = append(y.out.entries, entry{
				section: "global", key: prefix + "-" + opt, value: value,
				src: Source{Kind: SourceYAML, Name: prefix + "-" + opt, File: y.file, Line: at.n.Line, Section: "global", Path: at.path},
			})
		}
		allowed := map[string][]string{
			"volume": {"volumeClaimSpec"},
			"s3":     {"bucket", "endpoint", "region"},
			"gcs":    {"bucket"},
			"azure":  {"container"},
		}[kind]
		sk, sv, ok := y.fields(sn)
		if !ok {
			continue
		}
		for j, k := range sk {
			if !slices.Contains(allowed, k) {
				y.errorf(sv[j], "unknown field %q", k)
			}
		}
		if kind == "volume" {
			add("type", "posix", sn)
			continue
		}
		add("type", kind, sn)
		for j, k := range sk {
			if !slices.Contains(allowed, k) {
				continue
			}
			v, ok := y.scalar(sv[j])
			if !ok {
				continue
			}
			opt := map[string]string{"bucket": "-bucket", "endpoint": "-endpoint", "region": "-region", "container": "-container"}[k]
			add(kind+opt, v, sv[j])
		}
	}
}

// schedules reads repos[].schedules.
func (y *yamlParser) schedules(n yamlNode, key int) {
	keys, vals, ok := y.fields(n)
	if !ok {
		return
	}
	s := Schedules{Source: Source{Kind: SourceYAML, File: y.file, Line: n.n.Line, Path: n.path}}
	for i, k := range keys {
		v, ok := y.scalar(vals[i])
		if !ok {
			continue
		}
		switch k {
		case "full":
			s.Full = v
		case "differential":
			s.Differential = v
		case "incremental":
			s.Incremental = v
		default:
			y.errorf(vals[i], "unknown field %q", k)
			continue
		}
		if err := checkCron(v); err != nil {
			y.errorf(vals[i], "%v", err)
		}
	}
	y.out.schedules[key] = s
}

// checkCron accepts a 5-field cron expression or one of the descriptors Kubernetes CronJobs accept.
func checkCron(s string) error {
	if strings.HasPrefix(s, "@") {
		switch s {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			return nil
		}
		return fmt.Errorf("schedule %q: unknown descriptor", s)
	}
	if n := len(strings.Fields(s)); n != 5 {
		return fmt.Errorf("schedule %q has %d fields, a cron schedule has 5 (minute hour day-of-month month day-of-week)", s, n)
	}
	return nil
}

// instanceDefaults adds the pg1 options PGO writes for the PostgreSQL instance: pg1-path from spec.postgresVersion,
// pg1-port from spec.port (PGO's API defaults it to 5432) and pg1-socket-path.
func (y *yamlParser) instanceDefaults(spec yamlNode) {
	add := func(key, value string, at yamlNode, note string) {
		src := Source{Kind: SourcePGO, Name: key, Note: note}
		if at.n != nil {
			src.File, src.Line, src.Path = y.file, at.n.Line, at.path
		}
		y.out.defaults = append(y.out.defaults, entry{section: pgoStanza, key: key, value: value, src: src})
	}
	if v, ok := y.field(spec, "postgresVersion"); ok {
		if s, ok := y.scalar(v); ok && s != "" {
			add("pg1-path", pgoDataPrefix+s, v, "")
		}
	}
	if v, ok := y.field(spec, "port"); ok {
		if s, ok := y.scalar(v); ok && s != "" {
			add("pg1-port", s, v, "")
		}
	} else {
		add("pg1-port", pgoPort, yamlNode{}, "PostgreSQL port")
	}
	add("pg1-socket-path", pgoSocketPath, yamlNode{}, "PostgreSQL socket directory")
}
