package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Defaults of pgBackRest's compiled-in paths.
const (
	// DefaultConfigPath is pgBackRest's configuration directory (CFGOPTDEF_CONFIG_PATH).
	DefaultConfigPath = "/etc/pgbackrest"
	// DefaultLegacyConfigFile is the configuration file pgBackRest falls back to when the default one is missing.
	DefaultLegacyConfigFile = "/etc/pgbackrest.conf"

	configFileName    = "pgbackrest.conf"
	configIncludeName = "conf.d"
	envPrefix         = "PGBACKREST_"
)

// Input is everything Load reads besides files.
type Input struct {
	// Args are the command-line arguments without the program name (os.Args[1:]).
	Args []string
	// Env is the environment as KEY=value strings (os.Environ()); only PGBACKREST_* variables are read.
	Env []string
	// ConfigPath replaces pgBackRest's compiled-in configuration directory /etc/pgbackrest, which holds the default
	// pgbackrest.conf and conf.d (for tests).
	ConfigPath string
	// LegacyConfigFile replaces /etc/pgbackrest.conf, which pgBackRest reads when the default configuration file is
	// missing (for tests).
	LegacyConfigFile string
}

// optKey identifies an option value: the option name and, for indexed options, the 1-based index (0 otherwise).
type optKey struct {
	name string
	key  int
}

// rawValue is an option value as given, before type conversion.
type rawValue struct {
	ref    nameRef
	values []string
	negate bool
	reset  bool
	src    Source
	// invalid marks a value whose problem has been reported: the option counts as given but its value is not used.
	invalid bool
}

// loader holds the state of one Load.
type loader struct {
	t   *table
	in  Input
	cmd *commandDef
	// params are the command's parameters.
	params []string
	// found holds, for every option valid for the command, the value that won (flag, env, file, PGO default).
	found map[optKey]*rawValue
	// flags are the options given on the command line, valid or not.
	flags map[optKey]*rawValue
	// flagOrder keeps flags in command-line order for messages.
	flagOrder []optKey
	// fatal errors stop loading; errs are collected and returned together.
	errs     []error
	ignored  []IgnoredOption
	warnings []string

	format      string
	files       []string
	yaml        *yamlConfig
	stanzaSrc   Source
	resolved    map[optKey]*resolvedOpt
	groupKeys   map[group][]int
	groupsValid map[group]bool
}

// Load resolves pgBackRest-style configuration from the command line, PGBACKREST_* environment variables, pgBackRest
// INI files (the main file and conf.d) or a PGO YAML file, following pgBackRest 2.45's rules, and validates it. The
// error joins every problem found (errors.Join); no message contains the value of a secure option.
//
// Files are local and read without a context: a configuration load is not cancellable.
func Load(in Input) (*Config, error) {
	if in.ConfigPath == "" {
		in.ConfigPath = DefaultConfigPath
	}
	if in.LegacyConfigFile == "" {
		in.LegacyConfigFile = DefaultLegacyConfigFile
	}
	// pgBackRest's paths are absolute; so are the defaults derived from ConfigPath.
	if abs, err := filepath.Abs(in.ConfigPath); err == nil {
		in.ConfigPath = abs
	}
	l := &loader{
		t:           newTable(),
		in:          in,
		found:       map[optKey]*rawValue{},
		flags:       map[optKey]*rawValue{},
		resolved:    map[optKey]*resolvedOpt{},
		groupKeys:   map[group][]int{},
		groupsValid: map[group]bool{},
	}
	if !l.parseArgs() {
		return nil, invalid(l.errs)
	}
	cfg := &Config{Command: l.cmd.name, Parameters: l.params}
	if l.cmd.name == "help" || l.cmd.name == "version" {
		if len(l.errs) > 0 {
			return nil, invalid(l.errs)
		}
		return cfg, nil
	}
	l.checkFlagsValid()
	l.parseEnv()
	l.loadFiles()
	l.resolveAll()
	l.postRules()
	l.build(cfg)
	if len(l.errs) > 0 {
		return nil, invalid(l.errs)
	}
	return cfg, nil
}

// ErrInvalid is matched (errors.Is) by every error Load returns: the
// configuration, the arguments or the environment are not valid.
var ErrInvalid = errors.New("invalid configuration")

// invalidError holds every problem a Load found; it matches ErrInvalid.
type invalidError struct{ errs []error }

func (e *invalidError) Error() string {
	if len(e.errs) == 1 {
		return "invalid configuration: " + e.errs[0].Error()
	}
	return fmt.Sprintf("invalid configuration (%d problems):\n%v", len(e.errs), errors.Join(e.errs...))
}

func (e *invalidError) Unwrap() []error { return e.errs }

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// invalid joins the problems found into one error that matches ErrInvalid.
func invalid(errs []error) error { return &invalidError{errs: errs} }

// errorf records a problem with option name given at src.
func (l *loader) errorf(name string, src Source, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s (%s)", name, fmt.Sprintf(format, args...), src.location(name)))
}

// ignore records an option that is accepted but not used.
func (l *loader) ignore(name string, src Source, reason string) {
	l.ignored = append(l.ignored, IgnoredOption{Name: name, Source: src, Reason: reason})
}

// parseArgs parses the command line as pgBackRest does: --option=value, --option value, --no-option,
// --reset-option, unique abbreviations of option names, then the command and its parameters (options may follow
// the command). It returns false when the command line cannot be understood further.
func (l *loader) parseArgs() bool {
	args := l.in.Args
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			if l.cmd == nil {
				if !l.setCommand(arg) {
					return false
				}
				continue
			}
			l.params = append(l.params, arg)
			continue
		}
		name, value, hasValue := strings.Cut(arg, "=")
		if !strings.HasPrefix(name, "--") {
			l.errs = append(l.errs, fmt.Errorf("option '%s' must begin with --", name))
			return false
		}
		name = name[2:]
		ref, err := l.t.lookup(name, true)
		src := Source{Kind: SourceFlag, Name: name}
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s: %w (%s)", name, err, src))
			if ref.opt == nil {
				// Without the option it is unknown whether the next argument is its value: stop here.
				return false
			}
			if !hasValue && !ref.negate && !ref.reset && ref.opt.typ != typeBoolean {
				i++
			}
			continue
		}
		o := ref.opt
		rv := &rawValue{ref: ref, negate: ref.negate, reset: ref.reset, src: src}
		canonical := o.keyName(ref.key)
		switch {
		case ref.negate || ref.reset:
			if hasValue {
				l.errorf(canonical, src, "option does not allow an argument")
			}
		case o.typ == typeBoolean:
			if hasValue {
				switch value {
				case "y":
				case "n":
					rv.negate = true
				default:
					l.errorf(canonical, src, "boolean option argument must be 'y' or 'n'")
					rv.invalid = true
				}
			}
		default:
			if !hasValue {
				if i == len(args)-1 {
					l.errorf(canonical, src, "option requires an argument")
					return false
				}
				i++
				value = args[i]
			}
			rv.values = []string{value}
		}
		if o.secure {
			l.errorf(canonical, src, "option is not allowed on the command line because it would expose a secret "+
				"in the process list; set it in a configuration file or an environment variable")
			continue
		}
		k := optKey{o.name, ref.key}
		prev, seen := l.flags[k]
		if !seen {
			l.flags[k] = rv
			l.flagOrder = append(l.flagOrder, k)
			continue
		}
		switch {
		case prev.negate && rv.negate && ref.negate:
			l.errorf(canonical, src, "option is negated multiple times")
		case prev.reset && rv.reset:
			l.errorf(canonical, src, "option is reset multiple times")
		case (prev.reset && rv.negate) || (prev.negate && rv.reset):
			l.errorf(canonical, src, "option cannot be negated and reset")
		case prev.negate != rv.negate:
			l.errorf(canonical, src, "option cannot be set and negated")
		case prev.reset != rv.reset:
			l.errorf(canonical, src, "option cannot be set and reset")
		case len(rv.values) > 0 && o.typ.multi():
			prev.values = append(prev.values, rv.values...)
		default:
			l.errorf(canonical, src, "option cannot be set multiple times")
		}
	}
	if l.cmd == nil {
		if len(args) > 0 {
			l.errs = append(l.errs, errors.New("no command found"))
			return false
		}
		l.cmd = l.t.commands["help"]
	}
	if len(l.params) > 0 && !l.cmd.parameterAllowed {
		l.errs = append(l.errs, fmt.Errorf("command '%s' does not allow parameters", l.cmd.name))
	}
	return true
}

// setCommand sets the command from its name.
func (l *loader) setCommand(name string) bool {
	c, ok := l.t.commands[name]
	if !ok {
		if base, _, role := strings.Cut(name, ":"); role {
			if _, ok := l.t.commands[base]; ok {
				l.errs = append(l.errs, fmt.Errorf("invalid command '%s': pgsidecar has no command roles", name))
				return false
			}
		}
		l.errs = append(l.errs, fmt.Errorf("invalid command '%s'", name))
		return false
	}
	l.cmd = c
	return true
}

// checkFlagsValid rejects command-line options that the command does not accept and makes the others count.
func (l *loader) checkFlagsValid() {
	for _, k := range l.flagOrder {
		rv := l.flags[k]
		o := rv.ref.opt
		if !l.t.valid(l.cmd, o) {
			l.errorf(o.keyName(k.key), rv.src, "option not valid for command '%s'", l.cmd.name)
			continue
		}
		l.found[k] = rv
	}
}

// parseEnv reads PGBACKREST_<OPTION> variables: the option name in upper case with underscores for dashes. List and
// hash options take several values separated by ':'. Variables for options the command does not use are skipped, as
// pgBackRest does; an unknown option is an error (pgBackRest only warns).
func (l *loader) parseEnv() {
	for _, kv := range l.in.Env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) {
			continue
		}
		key := strings.ReplaceAll(strings.ToLower(name[len(envPrefix):]), "_", "-")
		src := Source{Kind: SourceEnv, Name: name}
		ref, err := l.t.lookup(key, false)
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s: %w (%s)", key, err, src))
			continue
		}
		o := ref.opt
		canonical := o.keyName(ref.key)
		if ref.negate || ref.reset {
			l.errorf(canonical, src, "negate and reset prefixes are only allowed on the command line")
			continue
		}
		if !l.t.valid(l.cmd, o) {
			l.ignore(canonical, src, fmt.Sprintf("not valid for command '%s'", l.cmd.name))
			continue
		}
		k := optKey{o.name, ref.key}
		if _, dup := l.found[k]; dup {
			continue
		}
		rv := &rawValue{ref: ref, src: src}
		if value == "" {
			l.errorf(canonical, src, "environment variable must have a value")
			rv.invalid = true
			l.found[k] = rv
			continue
		}
		switch {
		case o.typ == typeBoolean:
			b, err := parseBool(value)
			if err != nil {
				l.errorf(canonical, src, "boolean option must be 'y' or 'n'")
				rv.invalid = true
				l.found[k] = rv
				continue
			}
			rv.negate = !b
		case o.typ.multi():
			rv.values = strings.Split(value, ":")
		default:
			rv.values = []string{value}
		}
		l.found[k] = rv
	}
}

// cmdLineValue returns the value of a command-line-only option given by flag or environment.
func (l *loader) cmdLineValue(name string) (*rawValue, bool) {
	rv, ok := l.found[optKey{name, 0}]
	return rv, ok
}

// loadFiles reads the configuration files as pgBackRest's cfgFileLoad does:
//   - nothing given: the default file (or /etc/pgbackrest.conf when it is missing) and the default conf.d, both
//     optional;
//   - --config: only that file, which must exist (unless --config-path or --config-include-path is given too);
//   - --config-include-path: that directory, which must exist, plus the default (or --config) file;
//   - --config-path: changes the defaults of both to <path>/pgbackrest.conf and <path>/conf.d;
//   - --no-config: no main file; conf.d only when --config-path or --config-include-path is given.
//
// A main file that holds PGO YAML always comes with conf.d (where PGO mounts Secrets), required only when
// --config-include-path is given.
func (l *loader) loadFiles() {
	cfgOpt, configFound := l.cmdLineValue("config")
	pathOpt, configPathFound := l.cmdLineValue("config-path")
	includeOpt, includeFound := l.cmdLineValue("config-include-path")

	defConfig := filepath.Join(l.in.ConfigPath, configFileName)
	defInclude := filepath.Join(l.in.ConfigPath, configIncludeName)
	compiledDefault := defConfig
	if configPathFound && !pathOpt.negate {
		defConfig = strings.TrimSuffix(pathOpt.values[0], "/") + "/" + configFileName
		defInclude = strings.TrimSuffix(pathOpt.values[0], "/") + "/" + configIncludeName
	}
	loadConfig, loadInclude := true, true
	configRequired := configFound
	if configFound && cfgOpt.negate {
		loadConfig, configRequired = false, false
	}
	if configFound && !(configPathFound || includeFound) {
		loadInclude = false
	}

	var entries []entry
	if loadConfig {
		name := defConfig
		if configRequired {
			name = cfgOpt.values[0]
		}
		data, err := os.ReadFile(name)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && !configRequired:
			data = nil
			if name == compiledDefault {
				legacy, err := os.ReadFile(l.in.LegacyConfigFile)
				switch {
				case err == nil:
					data, name = legacy, l.in.LegacyConfigFile
				case errors.Is(err, fs.ErrNotExist):
				default:
					l.errs = append(l.errs, fmt.Errorf("read configuration file: %w", err))
				}
			}
		default:
			l.errs = append(l.errs, fmt.Errorf("read configuration file: %w", err))
		}
		if data != nil {
			l.files = append(l.files, name)
			if looksLikeINI(data) {
				l.format = "ini"
				e, errs := parseINI(data, name)
				entries = append(entries, e...)
				l.errs = append(l.errs, errs...)
			} else {
				l.format = "yaml"
				l.yaml = parseYAML(data, name, l.t)
				l.errs = append(l.errs, l.yaml.errs...)
				entries = append(entries, l.yaml.entries...)
				loadInclude = true
			}
		}
	}
	if loadInclude {
		dir := defInclude
		if includeFound {
			dir = includeOpt.values[0]
		}
		entries = append(entries, l.loadInclude(dir, includeFound)...)
	}
	l.applyEntries(entries)
}

// loadInclude reads every *.conf file of dir in name order. A missing dir is an error only when required.
func (l *loader) loadInclude(dir string, required bool) []entry {
	list, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil
		}
		l.errs = append(l.errs, fmt.Errorf("read configuration include path: %w", err))
		return nil
	}
	var entries []entry
	for _, de := range list {
		name := de.Name()
		if len(name) <= len(".conf") || !strings.HasSuffix(name, ".conf") {
			continue
		}
		path := filepath.Join(dir, name)
		// Kubernetes projects Secret files as symbolic links; follow them and skip directories.
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				l.errs = append(l.errs, fmt.Errorf("read configuration file: %w", err))
			}
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				l.errs = append(l.errs, fmt.Errorf("read configuration file: %w", err))
			}
			continue
		}
		l.files = append(l.files, path)
		e, errs := parseINI(data, path)
		entries = append(entries, e...)
		l.errs = append(l.errs, errs...)
	}
	return entries
}

// sectionEntry is one option of one section, merged over all files.
type sectionEntry struct {
	ref     nameRef
	entries []entry
	// bad is set when the option is given twice (the problem is reported).
	bad bool
}

// checkSection validates a section name: global, global:<command>, <stanza> or <stanza>:<command>.
func (l *loader) checkSection(section string, src Source) bool {
	if strings.ContainsAny(section, " \t[]=") {
		l.errs = append(l.errs, fmt.Errorf("%s:%d: invalid section name (spaces, brackets and '=' are not allowed)", src.File, src.Line))
		return false
	}
	if _, cmd, ok := strings.Cut(section, ":"); ok {
		if _, known := l.t.commands[cmd]; !known || cmd == "help" || cmd == "version" {
			l.errs = append(l.errs, fmt.Errorf("%s:%d: section [%s] names an unknown command '%s'", src.File, src.Line, section, cmd))
			return false
		}
	}
	return true
}

// applyEntries validates every configuration file setting and takes, for each option the command accepts, the
// value of the first section that sets it: [<stanza>:<command>], [<stanza>], [global:<command>], [global].
// Settings of other stanzas and commands are checked for known names only, as pgBackRest does not read them.
func (l *loader) applyEntries(entries []entry) {
	sections := map[string][]*sectionEntry{}
	var sectionOrder []string
	index := map[string]map[optKey]*sectionEntry{}
	badSection := map[string]bool{}
	for _, e := range entries {
		if _, checked := index[e.section]; !checked && !badSection[e.section] {
			if !l.checkSection(e.section, e.src) {
				badSection[e.section] = true
			} else {
				index[e.section] = map[optKey]*sectionEntry{}
				sectionOrder = append(sectionOrder, e.section)
			}
		}
		if badSection[e.section] {
			continue
		}
		ref, err := l.t.lookup(e.key, false)
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s: %w (%s)", e.key, err, e.src))
			continue
		}
		if ref.negate || ref.reset {
			l.errs = append(l.errs, fmt.Errorf("%s: negate and reset prefixes are only allowed on the command line (%s)", e.key, e.src))
			continue
		}
		k := optKey{ref.opt.name, ref.key}
		se, ok := index[e.section][k]
		if !ok {
			se = &sectionEntry{ref: ref}
			index[e.section][k] = se
			sections[e.section] = append(sections[e.section], se)
		}
		se.entries = append(se.entries, e)
	}
	// Duplicates within a section, possibly spread over several files.
	for _, section := range sectionOrder {
		for _, se := range sections[section] {
			if len(se.entries) < 2 {
				continue
			}
			first := se.entries[0]
			name := se.ref.opt.keyName(se.ref.key)
			for _, e := range se.entries[1:] {
				if e.key != first.key {
					l.errs = append(l.errs, fmt.Errorf("%s: duplicate options ('%s', '%s') in section [%s] (%s and %s)",
						name, first.key, e.key, first.section, first.src, e.src))
					se.bad = true
					break
				}
			}
			if !se.bad && !se.ref.opt.typ.multi() {
				var at []string
				for _, e := range se.entries {
					at = append(at, e.src.String())
				}
				l.errs = append(l.errs, fmt.Errorf("%s: option cannot be set multiple times in section [%s] (%s)",
					name, first.section, strings.Join(at, ", ")))
				se.bad = true
			}
		}
	}
	stanza := l.stanza()
	var order []string
	if stanza != "" {
		order = append(order, stanza+":"+l.cmd.name, stanza)
	}
	order = append(order, "global:"+l.cmd.name, "global")
	for si, section := range order {
		commandSection := si%2 == 0
		for _, se := range sections[section] {
			o := se.ref.opt
			k := optKey{o.name, se.ref.key}
			name := o.keyName(se.ref.key)
			src := se.entries[0].src
			if o.scope == scopeCommandLine {
				l.ignore(name, src, "command-line only option in a configuration file")
				continue
			}
			if !l.t.valid(l.cmd, o) {
				if commandSection {
					l.ignore(name, src, fmt.Sprintf("not valid for command '%s'", l.cmd.name))
				}
				continue
			}
			if o.scope == scopeStanza && (section == "global" || strings.HasPrefix(section, "global:")) {
				l.ignore(name, src, fmt.Sprintf("stanza option in global section [%s]", section))
				continue
			}
			if _, done := l.found[k]; done {
				continue
			}
			rv := &rawValue{ref: se.ref, src: src}
			bad := se.bad
			for _, e := range se.entries {
				if se.bad {
					break
				}
				if e.value == "" {
					l.errorf(name, e.src, "must have a value")
					bad = true
					continue
				}
				if o.typ == typeBoolean {
					b, err := parseBool(e.value)
					if err != nil {
						l.errorf(name, e.src, "boolean option must be 'y' or 'n'")
						bad = true
						continue
					}
					rv.negate = !b
					continue
				}
				rv.values = append(rv.values, e.value)
			}
			rv.invalid = bad
			l.found[k] = rv
		}
	}
	if l.yaml != nil {
		for _, e := range l.yaml.defaults {
			ref, err := l.t.lookup(e.key, false)
			if err != nil {
				l.errs = append(l.errs, fmt.Errorf("%s: %w (%s)", e.key, err, e.src))
				continue
			}
			k := optKey{ref.opt.name, ref.key}
			if !l.t.valid(l.cmd, ref.opt) {
				continue
			}
			if _, done := l.found[k]; done {
				continue
			}
			l.found[k] = &rawValue{ref: ref, values: []string{e.value}, src: e.src}
		}
	}
}

// stanza returns the stanza: --stanza (or PGBACKREST_STANZA), else PGO's "db" for a YAML configuration.
func (l *loader) stanza() string {
	if rv, ok := l.found[optKey{"stanza", 0}]; ok && len(rv.values) > 0 {
		l.stanzaSrc = rv.src
		return rv.values[0]
	}
	if l.yaml != nil && l.t.valid(l.cmd, l.t.byName["stanza"]) {
		src := Source{Kind: SourcePGO, Name: "stanza", Note: "the stanza PGO creates"}
		l.found[optKey{"stanza", 0}] = &rawValue{ref: nameRef{opt: l.t.byName["stanza"]}, values: []string{pgoStanza}, src: src}
		l.stanzaSrc = src
		return pgoStanza
	}
	return ""
}
