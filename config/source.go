package config

import (
	"fmt"
	"strings"
)

// SourceKind says where an option's value came from.
type SourceKind uint8

const (
	// SourceDefault is pgBackRest's default for the option (or a value derived from other options).
	SourceDefault SourceKind = iota
	// SourceFlag is the command line.
	SourceFlag
	// SourceEnv is a PGBACKREST_* environment variable.
	SourceEnv
	// SourceFile is a pgBackRest INI configuration file.
	SourceFile
	// SourceYAML is a PGO PostgresCluster manifest or its backups.pgbackrest section.
	SourceYAML
	// SourcePGO is a default that PGO applies when it generates pgBackRest's configuration.
	SourcePGO
)

// String returns a short name of the kind.
func (k SourceKind) String() string {
	switch k {
	case SourceDefault:
		return "default"
	case SourceFlag:
		return "flag"
	case SourceEnv:
		return "env"
	case SourceFile:
		return "file"
	case SourceYAML:
		return "yaml"
	case SourcePGO:
		return "pgo-default"
	}
	return "unknown"
}

// Source locates an option value.
type Source struct {
	Kind SourceKind
	// Name is the option name as written: the flag without dashes, the environment variable, the INI or YAML key.
	// It differs from the canonical name for deprecated aliases and abbreviated flags.
	Name string
	// File is the configuration file (INI or YAML).
	File string
	// Line is the 1-based line in File.
	Line int
	// Section is the INI section, or "global" for the options a YAML file contributes to the global section.
	Section string
	// Path is the YAML path, e.g. spec.backups.pgbackrest.global.repo1-path.
	Path string
	// Note explains a default or derived value.
	Note string
}

// String renders the source for messages and for Describe, e.g. "/etc/pgbackrest/pgbackrest.conf:3 [global]",
// "env PGBACKREST_REPO1_PATH", "flag --repo1-path" or "default".
func (s Source) String() string {
	var b strings.Builder
	switch s.Kind {
	case SourceDefault:
		b.WriteString("default")
		if s.Note != "" {
			b.WriteString(": " + s.Note)
		}
		return b.String()
	case SourceFlag:
		b.WriteString("flag --" + s.Name)
		return b.String()
	case SourceEnv:
		b.WriteString("env " + s.Name)
		return b.String()
	case SourceFile:
		fmt.Fprintf(&b, "%s:%d [%s]", s.File, s.Line, s.Section)
	case SourceYAML:
		fmt.Fprintf(&b, "%s:%d %s", s.File, s.Line, s.Path)
	case SourcePGO:
		b.WriteString("PGO default")
		if s.Path != "" {
			fmt.Fprintf(&b, " for %s:%d %s", s.File, s.Line, s.Path)
		} else if s.Note != "" {
			b.WriteString(" (" + s.Note + ")")
		}
		return b.String()
	}
	return b.String()
}

// location renders where a (possibly aliased) option was given, adding the written name when it is an alias.
func (s Source) location(canonical string) string {
	loc := s.String()
	if (s.Kind == SourceFile || s.Kind == SourceYAML) && s.Name != "" && s.Name != canonical {
		loc += " as " + s.Name
	}
	return loc
}
