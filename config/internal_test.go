package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"16", 16, true},
		{"16b", 16, true},
		{"1k", 1 << 10, true},
		{"1KB", 1 << 10, true},
		{"1KiB", 1 << 10, true},
		{"128MiB", 128 << 20, true},
		{"2mb", 2 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1g", 1 << 30, true},
		{"1TiB", 1 << 40, true},
		{"4PiB", 4 << 50, true},
		{"1PB", 1 << 50, true},
		{"", 0, false},
		{"KiB", 0, false},
		{"1.5MiB", 0, false},
		{"-1", 0, false},
		{"1 MiB", 0, false},
		{"1kibb", 0, false},
		{"1ib", 0, false},
		{"1bb", 0, false},
		{"1XB", 0, false},
		{"9999999999PiB", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseTimeAndInt(t *testing.T) {
	t.Parallel()
	times := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"60", time.Minute, true},
		{"0.1", 100 * time.Millisecond, true},
		{"1800", 30 * time.Minute, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"1m", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"", 0, false},
	}
	for _, tc := range times {
		got, err := parseTime(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTime(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for in, ok := range map[string]bool{"5": true, "-5": true, "5.0": false, "0x10": false, "five": false, "": false} {
		if _, err := parseInt(in); (err == nil) != ok {
			t.Errorf("parseInt(%q) error %v", in, err)
		}
	}
	for in, want := range map[string]bool{"y": true, "n": false} {
		if got, err := parseBool(in); err != nil || got != want {
			t.Errorf("parseBool(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"Y", "yes", "true", "1", ""} {
		if _, err := parseBool(in); err == nil {
			t.Errorf("parseBool(%q) accepted", in)
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	tab := newTable()
	tests := []struct {
		name   string
		prefix bool
		want   string
		alias  bool
		err    string
	}{
		{name: "repo1-path", want: "repo1-path"},
		{name: "repo4-s3-bucket", want: "repo4-s3-bucket"},
		{name: "pg8-port", want: "pg8-port"},
		{name: "pg200-path", want: "pg200-path"},
		{name: "repo-path", want: "repo1-path", alias: true},
		{name: "repo-type", want: "repo1-type", alias: true},
		{name: "repo-s3-bucket", want: "repo1-s3-bucket", alias: true},
		{name: "db-path", want: "pg1-path", alias: true},
		{name: "db3-host", want: "pg3-host", alias: true},
		{name: "db-socket-path", want: "pg1-socket-path", alias: true},
		{name: "repo2-s3-verify-ssl", want: "repo2-storage-verify-tls", alias: true},
		{name: "repo-s3-verify-ssl", want: "repo1-storage-verify-tls", alias: true},
		{name: "repo3-azure-ca-file", want: "repo3-storage-ca-file", alias: true},
		{name: "backup-host", want: "repo1-host", alias: true},
		{name: "retention-archive-type", want: "repo1-retention-archive-type", alias: true},
		{name: "hardlink", want: "repo1-hardlink", alias: true},
		{name: "archive-queue-max", want: "archive-push-queue-max", alias: true},
		{name: "no-online", want: "online"},
		{name: "reset-repo1-path", want: "repo1-path"},
		{name: "stan", prefix: true, want: "stanza"},
		{name: "repo2-s3-buck", prefix: true, want: "repo2-s3-bucket"},
		{name: "stan", err: "unknown option"},
		{name: "rep", prefix: true, err: "unknown option"},
		{name: "repo5-path", err: "pgsidecar supports repo1 to repo4"},
		{name: "repo0-path", err: "pgsidecar supports repo1 to repo4"},
		{name: "pg0-path", err: "index must be between 1 and 256"},
		{name: "pg257-path", err: "option index exceeds maximum of 256"},
		{name: "pg-path", err: "option requires an index, e.g. pg1-path"},
		{name: "repo-host", err: "option requires an index, e.g. repo1-host"},
		{name: "compress1-type", err: "option cannot have an index"},
		{name: "repo-azure-verify-tls", err: "deprecated option requires an index"},
		{name: "db1-path-x", err: "unknown option"},
		{name: "-path", err: "option cannot begin with a dash"},
		{name: "12-path", err: "option cannot begin with a number"}, {name: "1repo-path", err: "unknown option"},
		{name: "no-process-max", err: "option cannot be negated"},
		{name: "reset-stanza", err: "option cannot be reset"},
		{name: strings.Repeat("x", 65), err: "exceeds the maximum size"},
	}
	for _, tc := range tests {
		ref, err := tab.lookup(tc.name, tc.prefix)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("lookup(%q) error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("lookup(%q): %v", tc.name, err)
			continue
		}
		if got := ref.opt.keyName(ref.key); got != tc.want || ref.alias != tc.alias {
			t.Errorf("lookup(%q) = %s alias %v, want %s alias %v", tc.name, got, ref.alias, tc.want, tc.alias)
		}
	}
}

// TestTable checks the option table for consistency: references resolve, defaults and ranges are valid values of
// their type, and dependencies have no cycles.
func TestTable(t *testing.T) {
	t.Parallel()
	tab := newTable()
	if len(tab.options) < 165 {
		t.Fatalf("only %d options", len(tab.options))
	}
	for _, o := range tab.options {
		if tab.byName[o.name] != o {
			t.Errorf("%s: duplicate name", o.name)
		}
		if o.group != groupNone && !strings.HasPrefix(o.name, o.group.prefix()+"-") {
			t.Errorf("%s: group %s prefix", o.name, o.group.prefix())
		}
		for _, c := range o.commands {
			if _, ok := tab.commands[c]; !ok {
				t.Errorf("%s: unknown command %s", o.name, c)
			}
		}
		for c := range o.rules {
			if !slices.Contains(o.commands, c) {
				t.Errorf("%s: rule for command %s where the option is not valid", o.name, c)
			}
		}
		rules := []ruleSet{{def: o.def, allow: o.allow, depend: o.depend}}
		for _, r := range o.rules {
			rules = append(rules, ruleSet{def: r.def, allow: r.allow, depend: r.depend})
		}
		for _, rs := range rules {
			if d := rs.depend; d != nil {
				dopt := tab.byName[d.option]
				if dopt == nil {
					t.Errorf("%s: depends on unknown %s", o.name, d.option)
					continue
				}
				if d.def != "" && o.typ != typeBoolean {
					t.Errorf("%s: dependency default on a non-boolean", o.name)
				}
			}
			if rs.def.ok {
				checkValue(t, o, rs.def.value, rs.allow)
			}
			for _, a := range rs.allow {
				checkValue(t, o, a, nil)
			}
		}
		if o.rangeMin != "" {
			checkValue(t, o, o.rangeMin, nil)
			checkValue(t, o, o.rangeMax, nil)
		}
		if o.secure && o.scope == scopeCommandLine {
			t.Errorf("%s: a secure option that may only be given on the command line cannot be given at all", o.name)
		}
		// Dependencies must end: follow the chain.
		seen := map[string]bool{}
		for d := o.depend; d != nil; d = tab.byName[d.option].depend {
			if seen[d.option] {
				t.Errorf("%s: dependency cycle through %s", o.name, d.option)
				break
			}
			seen[d.option] = true
		}
	}
	for _, c := range extensionCommands() {
		for _, like := range c.like {
			if cmd, ok := tab.commands[like]; !ok || cmd.extension {
				t.Errorf("extension command %s: like %s is not a pgBackRest command", c.name, like)
			}
		}
	}
	for _, o := range extensionOptions() {
		if !o.extension {
			t.Errorf("%s: extension options must be marked", o.name)
		}
	}
	secure := map[string]bool{}
	for _, o := range tab.options {
		if o.secure {
			secure[o.name] = true
		}
	}
	for _, name := range []string{"repo-cipher-pass", "repo-s3-key", "repo-s3-key-secret", "repo-s3-token", "repo-azure-key", "repo-gcs-key"} {
		if !secure[name] {
			t.Errorf("%s must be secure", name)
		}
	}
}

// checkValue fails when v is not a valid value of option o.
func checkValue(t *testing.T, o *optionDef, v string, allow []string) {
	t.Helper()
	var err error
	switch o.typ {
	case typeBoolean:
		_, err = parseBool(v)
	case typeInteger:
		_, err = parseInt(v)
	case typeSize:
		_, err = parseSize(v)
	case typeTime:
		_, err = parseTime(v)
	case typeString, typePath, typeStringID, typeList, typeHash:
		if v == "" {
			t.Errorf("%s: empty value", o.name)
		}
		if allow != nil && !slices.Contains(allow, v) {
			t.Errorf("%s: default %q not in allow list", o.name, v)
		}
	}
	if err != nil {
		t.Errorf("%s: %q is not a valid %s", o.name, v, o.typ)
	}
}

func TestParseINI(t *testing.T) {
	t.Parallel()
	data := "# comment\n\n  [global]  \nrepo1-path = /var/lib/pgbackrest  \nrecovery-option=a=b=c\n" +
		"repo1-s3-key=abc#not-a-comment\n\t# indented comment\n[db:backup]\nstart-fast=y\r\n"
	entries, errs := parseINI([]byte(data), "f.conf")
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := []entry{
		{section: "global", key: "repo1-path", value: "/var/lib/pgbackrest"},
		{section: "global", key: "recovery-option", value: "a=b=c"},
		{section: "global", key: "repo1-s3-key", value: "abc#not-a-comment"},
		{section: "db:backup", key: "start-fast", value: "y"},
	}
	if len(entries) != len(want) {
		t.Fatalf("entries = %+v", entries)
	}
	for i, e := range entries {
		if e.section != want[i].section || e.key != want[i].key || e.value != want[i].value {
			t.Errorf("entry %d = %+v, want %+v", i, e, want[i])
		}
	}
	if entries[0].src.Line != 4 || entries[3].src.Line != 9 || entries[0].src.File != "f.conf" {
		t.Errorf("locations %+v %+v", entries[0].src, entries[3].src)
	}
}

func TestLooksLikeINI(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"":                                      true,
		"# only a comment\n":                    true,
		"[global]\nrepo1-path=/x\n":             true,
		"\n  # c\nrepo1-path=/x\n":              true,
		"backups:\n  pgbackrest:\n":             false,
		"---\napiVersion: v1\n":                 false,
		"# yaml comment\nspec:\n  a: b=c\n":     false,
		"key: a=b\n":                            false,
		"apiVersion: postgres-operator/v1beta1": false,
	}
	for in, want := range tests {
		if got := looksLikeINI([]byte(in)); got != want {
			t.Errorf("looksLikeINI(%q) = %v", in, got)
		}
	}
}

// FuzzParseINI checks that the INI parser never panics and that what it returns is consistent with its input.
func FuzzParseINI(f *testing.F) {
	f.Add("[global]\nrepo1-path=/x\n")
	f.Add("[global\nkey\n=v\n[]\nk=v")
	f.Add("#c\n [db:backup] \n a = b = c \n\r\n")
	f.Add("\x00[\xff]\n=\n[a]\n==\n")
	f.Fuzz(func(t *testing.T, data string) {
		entries, errs := parseINI([]byte(data), "fuzz.conf")
		lines := strings.Count(data, "\n") + 1
		for _, e := range entries {
			if e.key == "" || e.section == "" || e.src.Line < 1 || e.src.Line > lines {
				t.Fatalf("bad entry %+v", e)
			}
			if strings.ContainsAny(e.key, "\n") || strings.TrimSpace(e.value) != e.value {
				t.Fatalf("untrimmed entry %+v", e)
			}
		}
		for _, err := range errs {
			if !strings.HasPrefix(err.Error(), "fuzz.conf:") {
				t.Fatalf("error without location: %v", err)
			}
		}
		_ = looksLikeINI([]byte(data))
	})
}
