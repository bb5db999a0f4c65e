package config

import (
	"fmt"
	"strings"
)

// entry is one key=value setting of a configuration section: a line of a pgBackRest INI file, or a setting that a
// PGO YAML file contributes to the global section.
type entry struct {
	section string
	key     string
	value   string
	src     Source
}

// parseINI parses a pgBackRest configuration file the way pgBackRest's ini.c does: lines are trimmed; blank lines
// and lines starting with # are skipped (a # later in a line is part of the value); [section] starts a section;
// every other line is key=value split at the first '=', both sides trimmed. A key before any section, a line without
// '=', an empty key, an empty section and a section without its closing ']' are errors. Parsing goes on after an error
// so that every problem is reported; the messages carry file:line but never the line's content, which may hold a
// secret.
func parseINI(data []byte, file string) ([]entry, []error) {
	var (
		entries []entry
		errs    []error
		section string
		// skip is set after a broken section header so that its keys do not add an error each.
		skip bool
	)
	for i, raw := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			switch {
			case line[len(line)-1] != ']':
				errs = append(errs, fmt.Errorf("%s:%d: ini section should end with ]", file, lineNo))
				skip = true
			case len(line) == 2:
				errs = append(errs, fmt.Errorf("%s:%d: invalid empty section", file, lineNo))
				skip = true
			default:
				section = line[1 : len(line)-1]
				skip = false
			}
			continue
		}
		if skip {
			continue
		}
		if section == "" {
			errs = append(errs, fmt.Errorf("%s:%d: key/value found outside of section", file, lineNo))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: missing '=' in key/value", file, lineNo))
			continue
		}
		key = strings.TrimSpace(key)
		if key == "" {
			errs = append(errs, fmt.Errorf("%s:%d: key is zero-length", file, lineNo))
			continue
		}
		entries = append(entries, entry{
			section: section, key: key, value: strings.TrimSpace(value),
			src: Source{Kind: SourceFile, Name: key, File: file, Line: lineNo, Section: section},
		})
	}
	return entries, errs
}

// looksLikeINI tells an INI file from YAML by its first meaningful line: "[section]" or "key=value" means INI.
// An empty file is INI.
func looksLikeINI(data []byte) bool {
	for raw := range strings.SplitSeq(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line == "---" {
			continue
		}
		if line[0] == '[' {
			return true
		}
		key, _, ok := strings.Cut(line, "=")
		if !ok {
			return false
		}
		key = strings.TrimSpace(key)
		return key != "" && !strings.ContainsAny(key, " \t:\"'{}[]")
	}
	return true
}
