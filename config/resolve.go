package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// resolvedOpt is the final value of one option at one index.
type resolvedOpt struct {
	def *optionDef
	key int
	// set: the option has a value, given or default.
	set bool
	// negated: a non-boolean option negated on the command line (--no-config).
	negated bool
	// invalid: the value was given but is not valid (the problem is reported).
	invalid bool
	// dependFailed: the option's dependency is not met, so it takes no value (or the dependency default).
	dependFailed bool
	// unknown: an option this one depends on has an invalid value, so this one cannot be resolved.
	unknown bool
	src     Source
	// display is the value as pgBackRest shows it (booleans y/n, paths without a trailing slash).
	display string
	values  []string
	b       bool
	i       int64
	d       time.Duration
	hash    map[string]string
}

// name returns the indexed option name.
func (r *resolvedOpt) name() string { return r.def.keyName(r.key) }

// shown returns the value for messages: <redacted> for secure options.
func (r *resolvedOpt) shown() string {
	if r.def.secure {
		return redacted
	}
	return r.display
}

// usable reports whether the option has a valid value.
func (r *resolvedOpt) usable() bool { return r != nil && r.set && !r.invalid && !r.unknown }

// depKey returns the index at which dependency d of option o (at key) is looked up.
func depKey(o, d *optionDef, key int) int {
	if d.group == groupNone {
		return 0
	}
	if o.group == groupNone {
		return 1
	}
	return key
}

// resolveAll determines the indexes of the repo and pg groups and resolves every option the command accepts.
func (l *loader) resolveAll() {
	for _, o := range l.t.options {
		if o.group != groupNone && l.t.valid(l.cmd, o) {
			l.groupsValid[o.group] = true
		}
	}
	for g := range l.groupsValid {
		keys := map[int]bool{}
		for k, rv := range l.found {
			if rv.ref.opt.group == g && !rv.reset {
				keys[k.key] = true
			}
		}
		// pgBackRest always keeps pg1 when any pg index is used.
		if g == groupPg && len(keys) > 0 {
			keys[1] = true
		}
		list := make([]int, 0, len(keys))
		for k := range keys {
			list = append(list, k)
		}
		slices.Sort(list)
		if len(list) == 0 {
			list = []int{1}
		}
		l.groupKeys[g] = list
	}
	l.resolveGroupsAndGlobals()
	// Drop indexes that only hold defaults (a phantom created by an option that did not resolve); the last one left
	// becomes index 1 when it holds only defaults, as in pgBackRest.
	for g, keys := range l.groupKeys {
		keep := func(key int) bool {
			for _, o := range l.t.options {
				if o.group != g {
					continue
				}
				if r, ok := l.resolved[optKey{o.name, key}]; ok && r.src.Kind != SourceDefault {
					return true
				}
			}
			return false
		}
		for i := len(keys) - 1; i >= 0 && len(keys) > 1; i-- {
			if !keep(keys[i]) {
				keys = slices.Delete(keys, i, i+1)
			}
		}
		if len(keys) == 1 && keys[0] != 1 && !keep(keys[0]) {
			for _, o := range l.t.options {
				if o.group == g {
					delete(l.resolved, optKey{o.name, keys[0]})
				}
			}
			keys = []int{1}
			l.groupKeys[g] = keys
			l.resolveGroupsAndGlobals()
		}
		l.groupKeys[g] = keys
	}
}

// resolveGroupsAndGlobals resolves every valid option at every index of its group.
func (l *loader) resolveGroupsAndGlobals() {
	for _, o := range l.t.options {
		if !l.t.valid(l.cmd, o) {
			continue
		}
		for _, key := range l.keysOf(o) {
			l.resolve(o, key)
		}
	}
}

// keysOf returns the indexes of option o: its group's, or 0.
func (l *loader) keysOf(o *optionDef) []int {
	if o.group == groupNone {
		return []int{0}
	}
	return l.groupKeys[o.group]
}

// resolve computes the value of option o at key, applying its dependency, its default and the required rule.
func (l *loader) resolve(o *optionDef, key int) *resolvedOpt {
	k := optKey{o.name, key}
	if r, ok := l.resolved[k]; ok {
		return r
	}
	r := &resolvedOpt{def: o, key: key, src: Source{Kind: SourceDefault, Name: o.keyName(key)}}
	l.resolved[k] = r
	raw := l.found[k]
	if raw != nil && raw.invalid {
		r.invalid, r.src = true, raw.src
		return r
	}
	rs := l.t.rulesFor(l.cmd, o)
	// The configuration file defaults follow Input.ConfigPath.
	switch o.name {
	case "config":
		rs.def = some(filepath.Join(l.in.ConfigPath, configFileName))
	case "config-include-path":
		rs.def = some(filepath.Join(l.in.ConfigPath, configIncludeName))
	case "config-path":
		rs.def = some(l.in.ConfigPath)
	}
	given := raw != nil && (o.typ == typeBoolean || !raw.negate) && !raw.reset
	if rs.depend != nil {
		met, unknown := l.dependMet(o, key, rs.depend)
		if unknown {
			r.unknown = true
			if raw != nil {
				r.src = raw.src
			}
			return r
		}
		if !met {
			r.dependFailed = true
			if given {
				l.dependProblem(o, key, raw, rs.depend)
			}
			if rs.depend.def != "" {
				r.set, r.b, r.display = true, rs.depend.def == "y", rs.depend.def
				r.src.Note = "dependency not met"
			}
			return r
		}
	}
	switch {
	case given:
		r.src = raw.src
		l.setValue(r, raw.values, raw.negate, rs)
	case raw != nil && raw.negate:
		r.src, r.negated = raw.src, true
	case rs.def.ok:
		l.setValue(r, []string{rs.def.value}, rs.def.value == "n", rs)
	case rs.required:
		l.requiredProblem(o, key, rs)
	}
	return r
}

// dependMet reports whether dependency d of option o at key is met. unknown is true when the option depended on
// has an invalid value.
func (l *loader) dependMet(o *optionDef, key int, d *dependRule) (met, unknown bool) {
	dopt := l.t.byName[d.option]
	if !l.t.valid(l.cmd, dopt) {
		return false, false
	}
	dr := l.resolve(dopt, depKey(o, dopt, key))
	if dr.invalid || dr.unknown {
		return false, true
	}
	if !dr.set {
		return false, false
	}
	return len(d.values) == 0 || slices.Contains(d.values, dr.display), false
}

// dependText renders a dependency for messages, e.g. "repo1-type = 'gcs'".
func dependText(name string, values []string) string {
	switch len(values) {
	case 0:
		return name
	case 1:
		return fmt.Sprintf("%s = '%s'", name, values[0])
	}
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + v + "'"
	}
	return fmt.Sprintf("%s in (%s)", name, strings.Join(q, ", "))
}

// failure is the option at which a dependency chain fails.
type failure struct {
	r      *resolvedOpt
	values []string
}

// failRoot follows the dependency chain of option o at key to the option that is unset or has a value outside the
// list.
func (l *loader) failRoot(o *optionDef, key int, d *dependRule) failure {
	dopt := l.t.byName[d.option]
	dk := depKey(o, dopt, key)
	dr := l.resolve(dopt, dk)
	if dr.dependFailed {
		if rs := l.t.rulesFor(l.cmd, dopt); rs.depend != nil {
			return l.failRoot(dopt, dk, rs.depend)
		}
	}
	return failure{r: dr, values: d.values}
}

// dependProblem handles an option that was given although its dependency is not met. When the chain ends at the
// repository type (repo1-gcs-bucket with repo1-type=s3) the repository mixes storage types: an error. Otherwise the
// option is an error on the command line and ignored in files and the environment, as in pgBackRest.
func (l *loader) dependProblem(o *optionDef, key int, raw *rawValue, d *dependRule) {
	name := o.keyName(key)
	root := l.failRoot(o, key, d)
	if root.r.def.name == "repo-type" && root.r.set {
		l.errorf(name, raw.src, "only valid when %s, but %s is '%s' (%s)",
			dependText(root.r.name(), root.values), root.r.name(), root.r.shown(), root.r.src)
		return
	}
	dname := l.t.byName[d.option].keyName(depKey(o, l.t.byName[d.option], key))
	switch raw.src.Kind {
	case SourceFlag:
		l.errorf(name, raw.src, "option not valid without option %s", dependText(dname, d.values))
		return
	case SourcePGO:
		// PGO's defaults only apply where they can.
		return
	default:
	}
	l.ignore(name, raw.src, "not valid without option "+dependText(dname, d.values))
}

// requiredProblem reports a required option that is not set.
func (l *loader) requiredProblem(o *optionDef, key int, rs ruleSet) {
	name := o.keyName(key)
	if d := rs.depend; d != nil && len(d.values) > 0 {
		dopt := l.t.byName[d.option]
		dr := l.resolve(dopt, depKey(o, dopt, key))
		l.errs = append(l.errs, fmt.Errorf("%s: required when %s=%s but not set (%s from %s)",
			name, dr.name(), dr.shown(), dr.name(), dr.src))
		return
	}
	if o.group == groupRepo {
		if tr := l.resolved[optKey{"repo-type", key}]; tr.usable() {
			l.errs = append(l.errs, fmt.Errorf("%s: required for %s=%s but not set (%s from %s)",
				name, tr.name(), tr.shown(), tr.name(), tr.src))
			return
		}
	}
	hint := ""
	if o.scope == scopeStanza {
		hint = "; does the stanza exist in the configuration?"
	}
	l.errs = append(l.errs, fmt.Errorf("%s: required by command '%s' but not set%s", name, l.cmd.name, hint))
}

// setValue converts and checks the value of r.
func (l *loader) setValue(r *resolvedOpt, values []string, negate bool, rs ruleSet) {
	o := r.def
	name := r.name()
	quote := func(v string) string {
		if o.secure {
			return "the value"
		}
		return "'" + v + "'"
	}
	fail := func(format string, args ...any) {
		r.invalid = true
		l.errorf(name, r.src, format, args...)
	}
	if o.typ == typeBoolean {
		r.set, r.b = true, !negate
		r.display = formatBool(r.b)
		return
	}
	if len(values) == 0 {
		fail("must have a value")
		return
	}
	v := values[0]
	switch o.typ {
	case typeInteger, typeSize, typeTime:
		var n, lo, hi int64
		var err error
		conv := func(s string) (int64, error) {
			switch o.typ {
			case typeSize:
				return parseSize(s)
			case typeTime:
				d, err := parseTime(s)
				return int64(d / time.Millisecond), err
			}
			return parseInt(s)
		}
		if n, err = conv(v); err != nil {
			fail("%s is not a valid %s", quote(v), o.typ)
			return
		}
		if o.rangeMin != "" {
			lo, _ = conv(o.rangeMin)
			hi, _ = conv(o.rangeMax)
			if n < lo || n > hi {
				fail("%s is out of range (%s to %s)", quote(v), o.rangeMin, o.rangeMax)
				return
			}
		}
		if len(rs.allow) > 0 {
			ok := false
			for _, a := range rs.allow {
				if an, err := conv(a); err == nil && an == n {
					ok = true
				}
			}
			if !ok {
				fail("%s is not allowed (allowed: %s)", quote(v), strings.Join(rs.allow, ", "))
				return
			}
		}
		r.i = n
		if o.typ == typeTime {
			r.d = time.Duration(n) * time.Millisecond
		}
		r.display = v
	case typeString, typePath, typeStringID:
		if v == "" {
			fail("must have a value")
			return
		}
		if o.typ == typePath {
			if !strings.HasPrefix(v, "/") {
				fail("%s must begin with /", quote(v))
				return
			}
			if strings.Contains(v, "//") {
				fail("%s cannot contain //", quote(v))
				return
			}
			if len(v) > 1 {
				v = strings.TrimSuffix(v, "/")
			}
		}
		if len(rs.allow) > 0 && !slices.Contains(rs.allow, v) {
			fail("%s is not allowed (allowed: %s)", quote(v), strings.Join(rs.allow, ", "))
			return
		}
		r.display = v
	case typeList:
		r.values = slices.Clone(values)
		r.display = strings.Join(values, ", ")
	case typeHash:
		r.hash = map[string]string{}
		for _, kv := range values {
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				fail("key/value %s must have the form key=value", quote(kv))
				return
			}
			r.hash[k] = val
		}
		r.values = slices.Clone(values)
		r.display = strings.Join(values, ", ")
	case typeBoolean:
	}
	r.set = true
}

// get returns option name at key when the command accepts it and the index is in use, else nil.
func (l *loader) get(name string, key int) *resolvedOpt {
	o := l.t.byName[name]
	if o == nil || !l.t.valid(l.cmd, o) {
		return nil
	}
	if o.group != groupNone && !slices.Contains(l.groupKeys[o.group], key) {
		return nil
	}
	return l.resolved[optKey{name, key}]
}

// compressLevels holds the default, minimum and maximum level of each compression type (pgBackRest 2.45's
// common/compress/*/compress.h).
func compressLevels(t string) (def, lo, hi int64) {
	switch t {
	case "bz2":
		return 9, 1, 9
	case "gz":
		return 6, -1, 9
	case "lz4":
		return 1, -5, 12
	case "zst":
		return 3, -7, 22
	}
	return 0, 0, 0
}

// postRules applies the rules pgBackRest's cfgLoadUpdateOption adds after parsing.
func (l *loader) postRules() {
	l.compressRules()
	l.repoRules()
	if r := l.get("repo", 0); r.usable() {
		if !slices.Contains(l.groupKeys[groupRepo], int(r.i)) {
			var names []string
			for _, k := range l.groupKeys[groupRepo] {
				names = append(names, fmt.Sprintf("repo%d", k))
			}
			l.errorf("repo", r.src, "repository %d is not configured (configured: %s)", r.i, strings.Join(names, ", "))
		}
	} else if r != nil && !r.invalid && l.cmd.name == "stanza-delete" {
		keys := l.groupKeys[groupRepo]
		if len(keys) > 1 || (len(keys) == 1 && keys[0] != 1) {
			l.errs = append(l.errs, fmt.Errorf("repo: required by command 'stanza-delete' when more than one repository is configured"))
		}
	}
	beta := l.get("beta", 0)
	for _, o := range l.t.options {
		if !o.beta || o.name == "beta" || !l.t.valid(l.cmd, o) {
			continue
		}
		for _, key := range l.keysOf(o) {
			r := l.resolved[optKey{o.name, key}]
			if r != nil && r.set && r.src.Kind != SourceDefault && !(beta.usable() && beta.b) {
				l.errorf(r.name(), r.src, "option not valid without option 'beta' (beta features require --beta)")
			}
		}
	}
	for _, r := range l.resolved {
		if r.def.unused != "" && (r.set || r.negated) && r.src.Kind != SourceDefault && l.inUse(r) {
			l.ignore(r.name(), r.src, r.def.unused)
		}
	}
	slices.SortFunc(l.ignored, func(a, b IgnoredOption) int { return strings.Compare(a.Name, b.Name) })
}

// inUse reports whether r belongs to an index that survived.
func (l *loader) inUse(r *resolvedOpt) bool {
	return r.def.group == groupNone || slices.Contains(l.groupKeys[r.def.group], r.key)
}

// compressRules maps the deprecated compress option onto compress-type and sets compress-level's default, which
// depends on the compression type.
func (l *loader) compressRules() {
	ct := l.get("compress-type", 0)
	if c := l.get("compress", 0); c.usable() && c.src.Kind != SourceDefault {
		l.warnings = append(l.warnings, "option 'compress' is deprecated; use 'compress-type'")
		if ct.usable() && ct.src.Kind != SourceDefault {
			l.warnings = append(l.warnings, "'compress' and 'compress-type' options should not both be set")
		}
		if !c.b && ct.usable() && ct.src.Kind == SourceDefault {
			ct.display = "none"
			ct.src = Source{Kind: SourceDefault, Name: "compress-type", Note: "compress=n (" + c.src.String() + ")"}
		}
	}
	cl := l.get("compress-level", 0)
	if cl == nil || !ct.usable() {
		return
	}
	def, lo, hi := compressLevels(ct.display)
	switch {
	case cl.invalid || cl.unknown:
	case !cl.set:
		cl.set, cl.i, cl.display = true, def, strconv.FormatInt(def, 10)
		cl.src.Note = "for compress-type=" + ct.display
	case ct.display != "none" && (cl.i < lo || cl.i > hi):
		cl.invalid = true
		l.errorf(cl.name(), cl.src, "'%d' is out of range for compress-type=%s (%d to %d)", cl.i, ct.display, lo, hi)
	}
}

// repoRules checks and completes the repository options.
func (l *loader) repoRules() {
	keys := l.groupKeys[groupRepo]
	for _, key := range keys {
		typ := l.get("repo-type", key)
		if !typ.usable() {
			continue
		}
		// Local repositories of the same type may not share a path.
		if typ.display == "posix" || typ.display == "cifs" {
			for _, other := range keys {
				if other <= key {
					continue
				}
				ot := l.get("repo-type", other)
				p1, p2 := l.get("repo-path", key), l.get("repo-path", other)
				if ot.usable() && ot.display == typ.display && p1.usable() && p2.usable() && p1.display == p2.display &&
					!l.get("repo-host", key).usable() && !l.get("repo-host", other).usable() {
					l.errs = append(l.errs, fmt.Errorf("repo%d-path: local repo%d and repo%d paths are both '%s' but must be different (%s, %s)",
						other, key, other, p1.display, p1.src, p2.src))
				}
			}
		}
		// TLS verification cannot work with dots in a bucket name (RFC-2818 wildcards).
		if b, v := l.get("repo-s3-bucket", key), l.get("repo-storage-verify-tls", key); b.usable() && v.usable() && v.b &&
			strings.Contains(b.display, ".") {
			l.errorf(b.name(), b.src, "'%s' is not valid: RFC-2818 forbids dots in wildcard matches, so TLS verification "+
				"cannot proceed with this bucket name; remove the dots or set %s=n", b.display, v.name())
		}
		if u := l.get("repo-storage-upload-chunk-size", key); u != nil && !u.set && !u.invalid && !u.unknown && !u.dependFailed {
			size := int64(4 << 20)
			if typ.display == "s3" {
				size = 5 << 20
			}
			u.set, u.i, u.display = true, size, strconv.FormatInt(size, 10)
			u.src.Note = "for repo-type=" + typ.display
		}
		l.retentionRules(key)
	}
}

// retentionRules warns like pgBackRest about unbounded retention and derives repo-retention-archive's default.
func (l *loader) retentionRules(key int) {
	fullType := l.get("repo-retention-full-type", key)
	full := l.get("repo-retention-full", key)
	if fullType.usable() && full != nil && !full.set && !full.invalid {
		l.warnings = append(l.warnings, fmt.Sprintf(
			"option '%s' is not set for '%s=%s', the repository may run out of space", full.name(), fullType.name(), fullType.display))
	}
	archive := l.get("repo-retention-archive", key)
	archiveType := l.get("repo-retention-archive-type", key)
	if archive == nil || !archiveType.usable() || archive.invalid {
		return
	}
	diff := l.get("repo-retention-diff", key)
	if archive.set {
		if archiveType.display == "diff" && !diff.usable() {
			l.warnings = append(l.warnings, fmt.Sprintf("option '%s' is not set for '%s=diff'", diff.name(), archiveType.name()))
		}
		return
	}
	derive := func(from *resolvedOpt) {
		archive.set, archive.i, archive.display = true, from.i, from.display
		archive.src.Note = "from " + from.name()
	}
	switch archiveType.display {
	case "full":
		if fullType.usable() && fullType.display == "count" && full.usable() {
			derive(full)
		}
	case "diff":
		if diff.usable() {
			derive(diff)
		} else {
			l.warnings = append(l.warnings, fmt.Sprintf("WAL segments will not be expired: option '%s=diff' but neither option '%s' nor option '%s' is set",
				archiveType.name(), archive.name(), diff.name()))
		}
	case "incr":
		l.warnings = append(l.warnings, fmt.Sprintf("WAL segments will not be expired: option '%s=incr' but option '%s' is not set",
			archiveType.name(), archive.name()))
	}
}
