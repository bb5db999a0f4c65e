package repo

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
)

// Names shared by every info file.
const (
	// RepositoryFormat is the repository format number written to and required in
	// [backrest] backrest-format.
	RepositoryFormat = 5

	// WriterVersion is the backrest-version written to every file this package saves: the
	// pgBackRest release whose format is emulated. pgBackRest 2.45 writes its own version
	// there and reads it back only for display and to refuse resuming a backup written by
	// another version, so any value is accepted on load.
	WriterVersion = "2.45"

	sectionBackrest   = "backrest"
	sectionCipher     = "cipher"
	keyFormat         = "backrest-format"
	keyVersion        = "backrest-version"
	keyChecksum       = "backrest-checksum"
	keyCipherPass     = "cipher-pass"
	checksumTrailerFm = "\n[backrest]\nbackrest-checksum="
)

// Document is the content of a pgBackRest info file (archive.info, backup.info or a
// backup.manifest): sections of key/value pairs whose values are JSON text, in file order.
// The trailing backrest-checksum is not part of a Document: ParseInfo verifies it and
// Render computes it.
type Document struct {
	// Sections in file order. A section that appears more than once in a file is merged
	// into its first appearance (pgBackRest itself repeats [backrest] for the checksum).
	Sections []*Section
	// Lines is the number of lines of the parsed file (0 for a Document built in memory).
	Lines int

	byName map[string]*Section
}

// Section is one [name] section of a Document.
type Section struct {
	// Name is the section name without brackets.
	Name string
	// Line is the line of the section header (0 when built in memory).
	Line int
	// Entries in file order.
	Entries []Entry

	index map[string]int
}

// Entry is one key=value line. Value is the raw JSON text exactly as it appears after the
// '=' (pgBackRest hashes it as written).
type Entry struct {
	// Key is the raw key text (not JSON-quoted).
	Key string
	// Value is the raw JSON text after the '='.
	Value string
	// Line is the 1-based line in the parsed file (0 when built in memory).
	Line int
}

// NewDocument returns a Document holding only the [backrest] section with
// backrest-format=5 and backrest-version set to version.
func NewDocument(version string) *Document {
	d := &Document{}
	s := d.AddSection(sectionBackrest)
	s.Add(keyFormat, strconv.Itoa(RepositoryFormat))
	s.Add(keyVersion, jsonString(version))
	return d
}

// Section returns the section with the given name, or nil.
func (d *Document) Section(name string) *Section {
	if d.byName == nil {
		d.byName = make(map[string]*Section, len(d.Sections))
		for _, s := range d.Sections {
			if _, ok := d.byName[s.Name]; !ok {
				d.byName[s.Name] = s
			}
		}
	}
	return d.byName[name]
}

// AddSection appends a new, empty section and returns it.
func (d *Document) AddSection(name string) *Section {
	s := &Section{Name: name}
	d.Sections = append(d.Sections, s)
	if d.byName != nil {
		if _, ok := d.byName[name]; !ok {
			d.byName[name] = s
		}
	}
	return s
}

// BackrestVersion returns the decoded [backrest] backrest-version, or "" if absent.
func (d *Document) BackrestVersion() string {
	s := d.Section(sectionBackrest)
	if s == nil {
		return ""
	}
	e, ok := s.Lookup(keyVersion)
	if !ok {
		return ""
	}
	v, _, err := jsonStringOrNull(e.Value)
	if err != nil {
		return ""
	}
	return v
}

// Add appends key=value (value is raw JSON text). It does not check for duplicates;
// Render does.
func (s *Section) Add(key, value string) {
	s.Entries = append(s.Entries, Entry{Key: key, Value: value})
	if s.index != nil {
		if _, ok := s.index[key]; !ok {
			s.index[key] = len(s.Entries) - 1
		}
	}
}

// Lookup returns the entry with the given key.
func (s *Section) Lookup(key string) (Entry, bool) {
	if s == nil {
		return Entry{}, false
	}
	if s.index == nil {
		s.index = make(map[string]int, len(s.Entries))
		for i, e := range s.Entries {
			if _, ok := s.index[e.Key]; !ok {
				s.index[e.Key] = i
			}
		}
	}
	i, ok := s.index[key]
	if !ok {
		return Entry{}, false
	}
	return s.Entries[i], true
}

// checksummer computes backrest-checksum incrementally: the SHA-1 of the JSON object
// {"section":{"key":value,...},...} built from the key/values in file order, section names
// raw, keys JSON-escaped, values as written, the checksum itself excluded.
type checksummer struct {
	h           hash.Hash
	lastSection string
	started     bool
	scratch     []byte
}

func newChecksummer() *checksummer {
	c := &checksummer{h: sha1.New()}
	c.h.Write([]byte{'{'})
	return c
}

func (c *checksummer) add(section, key, value string) {
	b := c.scratch[:0]
	if !c.started || section != c.lastSection {
		if c.started {
			b = append(b, '}', ',')
		}
		b = append(b, '"')
		b = append(b, section...)
		b = append(b, '"', ':', '{')
		c.lastSection = section
		c.started = true
	} else {
		b = append(b, ',')
	}
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = append(b, value...)
	c.h.Write(b)
	if cap(b) <= 1<<16 {
		c.scratch = b
	}
}

func (c *checksummer) sum() string {
	c.h.Write([]byte{'}', '}'})
	return hex.EncodeToString(c.h.Sum(nil))
}

// splitKeyValue splits a strict-INI line at the first '=' whose remainder is valid JSON,
// as pgBackRest's iniValueNext() does (keys may contain '=').
func splitKeyValue(line string) (key, value string, msg string) {
	eq := strings.IndexByte(line, '=')
	if eq < 0 {
		return "", "", "missing '=' in key/value"
	}
	for {
		err := validateJSON(line[eq+1:])
		if err == nil {
			break
		}
		next := strings.IndexByte(line[eq+1:], '=')
		if next < 0 {
			return "", "", "invalid JSON value: " + err.Error()
		}
		eq += 1 + next
	}
	if eq == 0 {
		return "", "", "key is zero-length"
	}
	return line[:eq], line[eq+1:], ""
}

// quoteLine shortens a line for an error message.
func quoteLine(line string) string {
	if len(line) > 80 {
		line = line[:80] + "..."
	}
	return strconv.Quote(line)
}

// ParseInfo parses a pgBackRest info file (archive.info, backup.info or backup.manifest,
// decrypted) with the rules of pgBackRest 2.45's strict INI reader. name is used in error
// messages only. It verifies [backrest] backrest-format (must be 5) and backrest-checksum
// (must be present and match); every error is a *ParseError naming name and a line.
// ParseInfo reads the input line by line in linear time and never panics.
func ParseInfo(name string, data []byte) (*Document, error) {
	d := &Document{byName: map[string]*Section{}}
	sum := newChecksummer()
	var (
		cur                        *Section
		lineNo                     int
		checksum                   string
		checksumFound, formatFound bool
		checksumLine               int
	)
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		var raw []byte
		if end < 0 {
			raw = data[pos:]
			pos = len(data)
		} else {
			raw = data[pos : pos+end]
			pos += end + 1
		}
		lineNo++
		if len(raw) == 0 {
			continue
		}
		if bytes.IndexByte(raw, 0) >= 0 {
			return nil, formatErrorf(name, lineNo, "NUL byte in line")
		}
		line := string(raw)
		if line[0] == '[' && line[len(line)-1] == ']' {
			secName := line[1 : len(line)-1]
			if len(line) < 2 || secName == "" {
				return nil, formatErrorf(name, lineNo, "invalid empty section: %s", quoteLine(line))
			}
			cur = d.byName[secName]
			if cur == nil {
				cur = &Section{Name: secName, Line: lineNo, index: map[string]int{}}
				d.Sections = append(d.Sections, cur)
				d.byName[secName] = cur
			}
			continue
		}
		if cur == nil {
			return nil, formatErrorf(name, lineNo, "key/value found outside of section: %s", quoteLine(line))
		}
		key, value, msg := splitKeyValue(line)
		if msg != "" {
			return nil, formatErrorf(name, lineNo, "%s: %s", msg, quoteLine(line))
		}
		isChecksum := cur.Name == sectionBackrest && key == keyChecksum
		if !isChecksum {
			sum.add(cur.Name, key, value)
		}
		if prev, dup := cur.index[key]; dup || (isChecksum && checksumFound) {
			prevLine := checksumLine
			if dup {
				prevLine = cur.Entries[prev].Line
			}
			return nil, formatErrorf(name, lineNo, "duplicate key '%s' in section [%s] (first at line %d)",
				key, cur.Name, prevLine)
		}
		if cur.Name == sectionBackrest {
			switch key {
			case keyFormat:
				n, err := jsonUint64(value)
				if err != nil || n != RepositoryFormat {
					return nil, formatErrorf(name, lineNo, "expected format %d but found %s", RepositoryFormat, value)
				}
				formatFound = true
			case keyVersion:
				if _, err := jsonStr(value); err != nil {
					return nil, formatErrorf(name, lineNo, "invalid %s: %v", keyVersion, err)
				}
			case keyChecksum:
				s, err := jsonStr(value)
				if err != nil {
					return nil, formatErrorf(name, lineNo, "invalid %s: %v", keyChecksum, err)
				}
				checksum, checksumFound, checksumLine = s, true, lineNo
				continue
			}
		}
		cur.index[key] = len(cur.Entries)
		cur.Entries = append(cur.Entries, Entry{Key: key, Value: value, Line: lineNo})
	}
	d.Lines = lineNo
	lineNo = max(lineNo, 1) // problems of the whole file are reported at its last line
	actual := sum.sum()
	if !formatFound {
		return nil, formatErrorf(name, lineNo, "[%s] %s is missing", sectionBackrest, keyFormat)
	}
	if !checksumFound {
		return nil, &ParseError{File: name, Line: lineNo, Kind: ErrChecksum,
			Msg: "invalid checksum, actual '" + actual + "' but no checksum found"}
	}
	if checksum != actual {
		return nil, &ParseError{File: name, Line: checksumLine, Kind: ErrChecksum,
			Msg: "invalid checksum, actual '" + actual + "' but expected '" + checksum + "'"}
	}
	return d, nil
}

// Render writes the Document in pgBackRest's layout: each non-empty section as "[name]"
// followed by its key=value lines, sections separated by one empty line, then the
// "[backrest]" section with backrest-checksum computed over everything written. Sections
// and keys are written in the order they are in the Document; the typed Save functions
// order them as pgBackRest does. Render refuses (ErrInvalid) anything that would not parse
// back to the same Document: invalid JSON values, values starting with '[', empty or
// multi-line names, keys starting with '[', keys that would split elsewhere at a '=', and
// duplicate keys.
func (d *Document) Render() ([]byte, error) {
	size := 64
	for _, s := range d.Sections {
		size += len(s.Name) + 4
		for _, e := range s.Entries {
			size += len(e.Key) + len(e.Value) + 2
		}
	}
	buf := make([]byte, 0, size)
	sum := newChecksummer()
	first := true
	seen := map[string]bool{}
	for _, s := range d.Sections {
		if len(s.Entries) == 0 {
			continue
		}
		if s.Name == "" || strings.ContainsAny(s.Name, "\n\x00") {
			return nil, invalidf("section name %q cannot be written", s.Name)
		}
		if seen[s.Name] {
			return nil, invalidf("section [%s] written twice", s.Name)
		}
		seen[s.Name] = true
		if !first {
			buf = append(buf, '\n')
		}
		first = false
		buf = append(buf, '[')
		buf = append(buf, s.Name...)
		buf = append(buf, ']', '\n')
		keys := make(map[string]struct{}, len(s.Entries))
		for _, e := range s.Entries {
			if err := checkEntry(s.Name, e); err != nil {
				return nil, err
			}
			if _, dup := keys[e.Key]; dup {
				return nil, invalidf("duplicate key '%s' in section [%s]", e.Key, s.Name)
			}
			keys[e.Key] = struct{}{}
			sum.add(s.Name, e.Key, e.Value)
			buf = append(buf, e.Key...)
			buf = append(buf, '=')
			buf = append(buf, e.Value...)
			buf = append(buf, '\n')
		}
	}
	buf = append(buf, checksumTrailerFm...)
	buf = appendJSONString(buf, sum.sum())
	return append(buf, '\n'), nil
}

// checkEntry verifies that key=value is a line that parses back to the same key and value.
func checkEntry(section string, e Entry) error {
	if e.Key == "" || strings.ContainsAny(e.Key, "\n\x00") || e.Key[0] == '[' {
		return invalidf("key %q in section [%s] cannot be written", e.Key, section)
	}
	if section == sectionBackrest && e.Key == keyChecksum {
		return invalidf("%s is computed by Render and cannot be set", keyChecksum)
	}
	if e.Value == "" || e.Value[0] == '[' || strings.ContainsAny(e.Value, "\n\x00") {
		return invalidf("value %q of key '%s' in section [%s] cannot be written", e.Value, e.Key, section)
	}
	// The common case (no '=' in the key) only needs the value to be valid JSON.
	if strings.IndexByte(e.Key, '=') < 0 {
		if err := validateJSON(e.Value); err != nil {
			return invalidf("value of key '%s' in section [%s]: %v", e.Key, section, err)
		}
		return nil
	}
	k, v, msg := splitKeyValue(e.Key + "=" + e.Value)
	if msg != "" || k != e.Key || v != e.Value {
		return invalidf("key '%s' in section [%s] would not parse back unchanged", e.Key, section)
	}
	return nil
}
