package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// optType is the value type of an option, as pgBackRest's config.yaml names it.
type optType uint8

const (
	typeBoolean optType = iota + 1
	typeInteger
	typeSize
	typeTime
	typeString
	typePath
	typeList
	typeHash
	typeStringID
)

// String returns the config.yaml name of the type.
func (t optType) String() string {
	switch t {
	case typeBoolean:
		return "boolean"
	case typeInteger:
		return "integer"
	case typeSize:
		return "size"
	case typeTime:
		return "time"
	case typeString:
		return "string"
	case typePath:
		return "path"
	case typeList:
		return "list"
	case typeHash:
		return "hash"
	case typeStringID:
		return "string-id"
	}
	return "unknown"
}

// multi reports whether the option may be given several times (lists and hashes).
func (t optType) multi() bool { return t == typeList || t == typeHash }

// scope says where an option may be given.
type scope uint8

const (
	// scopeCommandLine options may only come from the command line or the environment.
	scopeCommandLine scope = iota + 1
	// scopeGlobal options may appear in any configuration file section.
	scopeGlobal
	// scopeStanza options may only appear in stanza sections of configuration files.
	scopeStanza
)

// group is the indexed option group an option belongs to.
type group uint8

const (
	groupNone group = iota
	groupRepo
	groupPg
)

// prefix returns the name prefix of the group ("repo" or "pg").
func (g group) prefix() string {
	switch g {
	case groupRepo:
		return "repo"
	case groupPg:
		return "pg"
	}
	return ""
}

const (
	// maxRepo is the highest repository index pgsidecar supports (pgBackRest allows 256).
	maxRepo = 4
	// maxKey is pgBackRest's highest index for any indexed option (CFG_OPTION_KEY_MAX).
	maxKey = 256
	// maxNameSize is pgBackRest's longest option name (OPTION_NAME_SIZE_MAX).
	maxNameSize = 64
)

// optional is a value that may be absent.
type optional struct {
	value string
	ok    bool
}

// some returns a present optional value.
func some(v string) optional { return optional{value: v, ok: true} }

// requirement overrides an option's required flag for one command.
type requirement int8

const (
	reqInherit requirement = iota
	reqTrue
	reqFalse
)

// dependRule says that an option is only valid when another option is set (and, when values is not empty, set to one
// of values). Boolean values are written "y" and "n".
type dependRule struct {
	option string
	values []string
	// def is the value ("y" or "n") a boolean option takes when the dependency is not met.
	def string
}

// cmdRule holds the rules of an option that differ for one command. Unset fields inherit the option's rules.
type cmdRule struct {
	def      optional
	allow    []string
	required requirement
	depend   *dependRule
}

// deprecation is an old name of an option. indexed means the name may carry an index (db2-path), unindexed that it may
// be given without one (db-path, meaning index 1).
type deprecation struct {
	name      string
	indexed   bool
	unindexed bool
}

// optionDef is one row of the option table.
type optionDef struct {
	name     string
	typ      optType
	scope    scope
	group    group
	secure   bool
	negate   bool
	beta     bool
	internal bool
	required bool
	def      optional
	allow    []string
	rangeMin string
	rangeMax string
	depend   *dependRule
	// commands lists the commands for which the option is valid (main command role only).
	commands []string
	rules    map[string]cmdRule
	// deprecated lists old names that still select this option.
	deprecated []deprecation
	// unused, when not empty, says why pgsidecar accepts the option but does nothing with it.
	unused string
	// extension marks options that pgsidecar adds to pgBackRest's set.
	extension bool
}

// reset reports whether --reset-<option> is allowed (every option that may appear in a configuration file).
func (o *optionDef) reset() bool { return o.scope != scopeCommandLine }

// keyName returns the option name for index key (1-based), e.g. repo2-path. Options outside a group ignore key.
func (o *optionDef) keyName(key int) string {
	if o.group == groupNone {
		return o.name
	}
	p := o.group.prefix()
	return fmt.Sprintf("%s%d%s", p, key, o.name[len(p):])
}

// commandDef is one command pgsidecar accepts.
type commandDef struct {
	name             string
	parameterAllowed bool
	internal         bool
	// extension marks commands pgsidecar adds to pgBackRest's set.
	extension bool
	// like lists, for an extension command, the pgBackRest commands whose options it accepts. The rules (defaults,
	// allow lists, dependencies) of the first listed command for which an option is valid apply.
	like []string
	// repoRequiredOnly limits, for an extension command, the required-option checks to the repo group.
	repoRequiredOnly bool
}

// extensionCommands returns the commands pgsidecar adds to pgBackRest's.
func extensionCommands() []commandDef {
	return []commandDef{
		{
			// config prints the resolved configuration; it accepts every option.
			name:      "config",
			extension: true,
			like: []string{
				"backup", "archive-push", "archive-get", "restore", "expire", "check", "info", "stanza-create",
				"stanza-upgrade", "stanza-delete", "verify", "annotate", "manifest", "repo-get", "repo-ls", "repo-put",
				"repo-rm", "repo-create", "server", "server-ping", "start", "stop",
			},
			repoRequiredOnly: true,
		},
		{
			// run is the long-running sidecar daemon: it archives WAL, takes scheduled backups and expires them.
			name:      "run",
			extension: true,
			like: []string{
				"archive-push", "archive-get", "backup", "expire", "check", "info", "stanza-create", "stanza-upgrade",
				"verify",
			},
		},
	}
}

// extensionOptions returns the options pgsidecar adds to pgBackRest's. Each entry sets extension: true, and its
// commands may name pgsidecar's own commands (run, config).
func extensionOptions() []optionDef {
	return []optionDef{
		{
			// metrics-address is where the daemon serves /metrics (Prometheus) and /healthz over HTTP, as host:port
			// (e.g. 127.0.0.1:9187); empty: no HTTP server.
			name:      "metrics-address",
			typ:       typeString,
			scope:     scopeGlobal,
			commands:  []string{"config", "run"},
			extension: true,
		},
	}
}

// table is the option and command table with its lookup indexes.
type table struct {
	options    []*optionDef
	byName     map[string]*optionDef
	deprecated map[string]deprecatedRef
	commands   map[string]*commandDef
}

// deprecatedRef points from a deprecated name to its option.
type deprecatedRef struct {
	opt *optionDef
	dep deprecation
}

// newTable builds the option table. It is cheap enough to build once per Load, which keeps the package free of
// package-level state.
func newTable() *table {
	t := &table{
		byName:     map[string]*optionDef{},
		deprecated: map[string]deprecatedRef{},
		commands:   map[string]*commandDef{},
	}
	defs := append(pgbackrestOptions(), extensionOptions()...)
	for i := range defs {
		o := &defs[i]
		t.options = append(t.options, o)
		t.byName[o.name] = o
	}
	for _, o := range t.options {
		for _, d := range o.deprecated {
			t.deprecated[d.name] = deprecatedRef{opt: o, dep: d}
		}
	}
	cmds := append(pgbackrestCommands(), extensionCommands()...)
	for i := range cmds {
		c := &cmds[i]
		t.commands[c.name] = c
	}
	return t
}

// effective returns the pgBackRest command whose rules apply to option o under command cmd, or "" when o is not
// valid for cmd.
func (t *table) effective(cmd *commandDef, o *optionDef) string {
	if slices.Contains(o.commands, cmd.name) {
		return cmd.name // a pgBackRest command, or an extension option of an extension command
	}
	if !cmd.extension {
		return ""
	}
	for _, like := range cmd.like {
		if slices.Contains(o.commands, like) {
			return like
		}
	}
	return ""
}

// valid reports whether option o may be used with command cmd.
func (t *table) valid(cmd *commandDef, o *optionDef) bool { return t.effective(cmd, o) != "" }

// ruleSet is the set of rules of one option under one command.
type ruleSet struct {
	def      optional
	allow    []string
	required bool
	depend   *dependRule
}

// rulesFor merges the option's rules with the overrides for cmd.
func (t *table) rulesFor(cmd *commandDef, o *optionDef) ruleSet {
	rs := ruleSet{def: o.def, allow: o.allow, required: o.required, depend: o.depend}
	eff := t.effective(cmd, o)
	if r, ok := o.rules[eff]; ok {
		if r.def.ok {
			rs.def = r.def
		}
		if r.allow != nil {
			rs.allow = r.allow
		}
		switch r.required {
		case reqTrue:
			rs.required = true
		case reqFalse:
			rs.required = false
		case reqInherit:
		}
		if r.depend != nil {
			rs.depend = r.depend
		}
	}
	if cmd.repoRequiredOnly && o.group != groupRepo {
		rs.required = false
	}
	return rs
}

// nameRef is an option name resolved against the table.
type nameRef struct {
	opt *optionDef
	// key is the 1-based index of a group option, 0 for options outside a group.
	key    int
	negate bool
	reset  bool
	// alias is set when the name was a deprecated one.
	alias bool
}

// lookup resolves an option name as written (without leading dashes). prefix allows a unique abbreviation, as
// pgBackRest allows on the command line. Errors do not repeat the name; r.opt is set when the option is known even if
// the name is not acceptable (a wrong index, a forbidden prefix).
func (t *table) lookup(written string, prefix bool) (nameRef, error) {
	var r nameRef
	name := written
	if len(name) > maxNameSize {
		return r, fmt.Errorf("option name exceeds the maximum size of %d", maxNameSize)
	}
	if rest, ok := strings.CutPrefix(name, "no-"); ok {
		r.negate = true
		name = rest
	} else if rest, ok := strings.CutPrefix(name, "reset-"); ok {
		r.reset = true
		name = rest
	}
	indexed := false
	if dash := strings.IndexByte(name, '-'); dash >= 0 {
		if dash == 0 {
			return r, errors.New("option cannot begin with a dash")
		}
		start := dash
		for start > 0 && name[start-1] >= '0' && name[start-1] <= '9' {
			start--
		}
		if start == 0 {
			return r, errors.New("option cannot begin with a number")
		}
		if start != dash {
			indexed = true
			digits := name[start:dash]
			key := 0
			for _, c := range digits {
				key = key*10 + int(c-'0')
				if key > maxKey {
					return r, fmt.Errorf("option index exceeds maximum of %d", maxKey)
				}
			}
			r.key = key
			name = name[:start] + name[dash:]
		}
	}
	opt := t.byName[name]
	deprecated := false
	if opt == nil && prefix {
		opt = uniquePrefix(name, t.options, func(o *optionDef) string { return o.name })
	}
	if opt == nil {
		ref, ok := t.deprecated[name]
		if !ok && prefix {
			refs := make([]deprecatedRef, 0, len(t.deprecated))
			for _, d := range t.deprecated {
				refs = append(refs, d)
			}
			if p := uniquePrefix(name, refs, func(d deprecatedRef) string { return d.dep.name }); p.opt != nil {
				ref, ok = p, true
			}
		}
		if ok {
			r.opt = ref.opt
			if indexed && !ref.dep.indexed {
				return r, errors.New("deprecated option cannot have an index")
			}
			if !indexed && !ref.dep.unindexed {
				return r, fmt.Errorf("deprecated option requires an index, e.g. %s", ref.opt.keyName(1))
			}
			opt = ref.opt
			deprecated = true
		}
	}
	if opt == nil {
		return r, errors.New("unknown option")
	}
	r.opt = opt
	if r.negate && !opt.negate {
		return r, errors.New("option cannot be negated")
	}
	if r.reset && !opt.reset() {
		return r, errors.New("option cannot be reset")
	}
	if !indexed && !deprecated {
		for _, d := range opt.deprecated {
			if d.name == opt.name && d.unindexed {
				deprecated = true
			}
		}
	}
	r.alias = deprecated
	if !deprecated {
		if indexed && opt.group == groupNone {
			return r, errors.New("option cannot have an index")
		}
		if !indexed && opt.group != groupNone {
			return r, fmt.Errorf("option requires an index, e.g. %s", opt.keyName(1))
		}
	}
	if opt.group != groupNone {
		if !indexed {
			r.key = 1
		}
		switch {
		case opt.group == groupRepo && (r.key < 1 || r.key > maxRepo):
			return r, fmt.Errorf("pgsidecar supports repo1 to repo%d", maxRepo)
		case r.key < 1:
			return r, fmt.Errorf("index must be between 1 and %d", maxKey)
		}
	}
	return r, nil
}

// uniquePrefix returns the only element whose name starts with p, or the zero value when none or several do.
func uniquePrefix[T any](p string, list []T, name func(T) string) T {
	var found T
	n := 0
	for _, e := range list {
		if strings.HasPrefix(name(e), p) {
			found = e
			n++
			if n > 1 {
				var zero T
				return zero
			}
		}
	}
	return found
}
