package repo

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// This file implements the JSON dialect of pgBackRest 2.45 (src/common/type/json.c):
//
//   - validateJSON reproduces jsonValidate(), which the strict INI reader uses to decide where
//     a key ends and its value begins. It is deliberately lenient in the same places as
//     pgBackRest (any escape is skipped, numbers are an optional '-' and digits) and strict
//     in the same places (no fractions or exponents, \u must be followed by four decimal
//     digits, and the character after them is swallowed, a pgBackRest quirk).
//   - jsonReader reproduces the typed readers (jsonReadStr, jsonReadUInt64, ...), which
//     decode strings strictly (\u00XX only) and scan object keys in order.
//   - appendJSONString and renderJSON reproduce the writer: compact, object keys sorted,
//     only " \ LF CR TAB BS FF escaped, everything else raw.

// errJSON is the cause of every JSON syntax or type error.
var errJSON = errors.New("invalid JSON")

func jsonErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errJSON, fmt.Sprintf(format, args...))
}

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack. pgBackRest has no
// limit, but nothing it writes is nested more than three levels deep.
const maxJSONDepth = 512

// maxJSONDigits is CVT_BASE10_BUFFER_SIZE: a number with this many digits or more is invalid.
const maxJSONDigits = 64

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func skipSpace(s string, pos int) int {
	for pos < len(s) && isJSONSpace(s[pos]) {
		pos++
	}
	return pos
}

// snippet returns the text at pos for error messages, shortened.
func snippet(s string, pos int) string {
	if pos >= len(s) {
		return "<end>"
	}
	rest := s[pos:]
	if len(rest) > 40 {
		rest = rest[:40] + "..."
	}
	return strconv.Quote(rest)
}

// validateJSON reports whether s is one JSON value followed only by whitespace, with the
// rules of pgBackRest's jsonValidate().
func validateJSON(s string) error {
	pos, err := skipJSON(s, 0, 0)
	if err != nil {
		return err
	}
	pos = skipSpace(s, pos)
	if pos != len(s) {
		return jsonErrorf("characters after JSON at %s", snippet(s, pos))
	}
	return nil
}

// skipJSON skips one value starting at pos (after optional whitespace) and returns the
// position after it.
func skipJSON(s string, pos, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, jsonErrorf("nested too deeply")
	}
	pos = skipSpace(s, pos)
	if pos >= len(s) {
		return 0, jsonErrorf("expected data")
	}
	switch c := s[pos]; {
	case c == '"':
		return skipJSONString(s, pos)
	case c == '-' || isDigit(c):
		_, end, err := scanJSONNumber(s, pos)
		return end, err
	case c == 't' || c == 'f':
		if strings.HasPrefix(s[pos:], "true") {
			return pos + 4, nil
		}
		if strings.HasPrefix(s[pos:], "false") {
			return pos + 5, nil
		}
		return 0, jsonErrorf("expected boolean at %s", snippet(s, pos))
	case c == 'n':
		if strings.HasPrefix(s[pos:], "null") {
			return pos + 4, nil
		}
		return 0, jsonErrorf("expected null at %s", snippet(s, pos))
	case c == '[':
		return skipJSONContainer(s, pos, depth, ']')
	case c == '{':
		return skipJSONContainer(s, pos, depth, '}')
	default:
		return 0, jsonErrorf("invalid type at %s", snippet(s, pos))
	}
}

// skipJSONContainer skips an array or object whose opening bracket is at pos.
func skipJSONContainer(s string, pos, depth int, closer byte) (int, error) {
	pos++
	first := true
	for {
		pos = skipSpace(s, pos)
		if pos >= len(s) {
			return 0, jsonErrorf("expected data")
		}
		// Peek past one comma to decide whether the container ends (jsonReadTypeNextIgnoreComma).
		peek := pos
		if s[peek] == ',' {
			peek = skipSpace(s, peek+1)
		}
		if peek < len(s) && s[peek] == closer {
			// The closing bracket must follow directly (after whitespace): a trailing comma is invalid.
			if s[pos] != closer {
				return 0, jsonErrorf("invalid type at %s", snippet(s, pos))
			}
			return pos + 1, nil
		}
		if peek >= len(s) {
			return 0, jsonErrorf("expected data")
		}
		if !first {
			if s[pos] != ',' {
				return 0, jsonErrorf("missing comma at %s", snippet(s, pos))
			}
			pos = skipSpace(s, pos+1)
		}
		first = false
		if closer == '}' {
			if s[pos] != '"' {
				return 0, jsonErrorf("expected string at %s", snippet(s, pos))
			}
			var err error
			if pos, err = skipJSONString(s, pos); err != nil {
				return 0, err
			}
			pos = skipSpace(s, pos)
			if pos >= len(s) || s[pos] != ':' {
				return 0, jsonErrorf("expected : after key at %s", snippet(s, pos))
			}
			pos++
		}
		var err error
		if pos, err = skipJSON(s, pos, depth+1); err != nil {
			return 0, err
		}
	}
}

// skipJSONString skips a string whose opening quote is at pos, with the rules of
// jsonReadSkipStr(): any escaped character is accepted, \u needs four decimal digits and
// the character following them is skipped as well.
func skipJSONString(s string, pos int) (int, error) {
	pos++
	for {
		if pos >= len(s) {
			return 0, jsonErrorf("expected '\"' but found end of value")
		}
		if s[pos] == '"' {
			return pos + 1, nil
		}
		if s[pos] == '\\' {
			pos++
			if pos >= len(s) {
				return 0, jsonErrorf("expected '\"' but found end of value")
			}
			if s[pos] == 'u' {
				pos++
				for i := 0; i < 4; i++ {
					if pos+i >= len(s) || !isDigit(s[pos+i]) {
						return 0, jsonErrorf("unable to decode at %s", snippet(s, pos-2))
					}
				}
				pos += 4
			}
		}
		pos++
	}
}

// scanJSONNumber scans an optional '-' and at least one digit. It returns the digits
// (with the sign) and the position after them.
func scanJSONNumber(s string, pos int) (string, int, error) {
	start := pos
	if s[pos] == '-' {
		pos++
	}
	digits := 0
	for pos+digits < len(s) && isDigit(s[pos+digits]) {
		digits++
	}
	if digits == 0 {
		return "", 0, jsonErrorf("no digits found at %s", snippet(s, start))
	}
	if digits >= maxJSONDigits {
		return "", 0, jsonErrorf("invalid number at %s", snippet(s, start))
	}
	end := pos + digits
	return s[start:end], end, nil
}

// jsonKind names the type of a JSON value for messages.
func jsonKind(s string, pos int) string {
	pos = skipSpace(s, pos)
	if pos >= len(s) {
		return "end"
	}
	switch c := s[pos]; {
	case c == '"':
		return "string"
	case c == '-' || isDigit(c):
		return "number"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	case c == '[':
		return "array"
	case c == '{':
		return "object"
	default:
		return "invalid"
	}
}

// decodeJSONString decodes a string whose opening quote is at pos with the rules of
// jsonReadStr(): the escapes " \ / n r t b f and \u00XX are decoded, anything else is an
// error. It returns the string and the position after the closing quote.
func decodeJSONString(s string, pos int) (string, int, error) {
	if pos >= len(s) || s[pos] != '"' {
		return "", 0, jsonErrorf("expected string but found %s", jsonKind(s, pos))
	}
	pos++
	// Fast path: no escapes.
	end := pos
	for end < len(s) && s[end] != '"' && s[end] != '\\' {
		end++
	}
	if end < len(s) && s[end] == '"' {
		return s[pos:end], end + 1, nil
	}
	var b strings.Builder
	b.WriteString(s[pos:end])
	pos = end
	for {
		if pos >= len(s) {
			return "", 0, jsonErrorf("expected '\"' but found end of value")
		}
		c := s[pos]
		if c == '"' {
			return b.String(), pos + 1, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			pos++
			continue
		}
		pos++
		if pos >= len(s) {
			return "", 0, jsonErrorf("expected '\"' but found end of value")
		}
		switch s[pos] {
		case '"':
			b.WriteByte('"')
		case '\\':
			b.WriteByte('\\')
		case '/':
			b.WriteByte('/')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if !strings.HasPrefix(s[pos+1:], "00") || pos+4 >= len(s) {
				return "", 0, jsonErrorf("unable to decode at %s", snippet(s, pos-1))
			}
			v, err := strconv.ParseUint(s[pos+3:pos+5], 16, 8)
			if err != nil {
				return "", 0, jsonErrorf("unable to decode at %s", snippet(s, pos-1))
			}
			b.WriteByte(byte(v))
			pos += 4
		default:
			return "", 0, jsonErrorf("invalid escape character at %s", snippet(s, pos-1))
		}
		pos++
	}
}

// appendJSONString appends s as a JSON string with pgBackRest's escaping: only " \ LF CR
// TAB BS FF are escaped; every other byte, including other control characters and
// non-UTF-8 bytes, is written raw.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		case '\b':
			esc = `\b`
		case '\f':
			esc = `\f`
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonString returns s rendered as a pgBackRest JSON string.
func jsonString(s string) string { return string(appendJSONString(nil, s)) }

// jsonKeyValid reports whether s can be written as an object key: pgBackRest writes keys
// without escaping and cannot read escaped keys back.
func jsonKeyValid(s string) bool {
	return !strings.ContainsAny(s, "\"\\\n\r\t\b\f")
}

// jsonValue is a decoded JSON value (jsonReadVar): nil (null), bool, uint64 (non-negative
// number), int64 (negative number), string, []jsonValue or jsonObject.
type jsonValue any

// jsonObject is a decoded object; keys are unique (a later duplicate replaces the value).
type jsonObject map[string]jsonValue

// parseJSONValue validates s and decodes its first value like jsonToVar().
func parseJSONValue(s string) (jsonValue, error) {
	if err := validateJSON(s); err != nil {
		return nil, err
	}
	// Like jsonToVar(), anything after the first value is ignored once the whole text has
	// been validated (the two can disagree only through the \u quirk of validation).
	v, _, err := decodeJSONValue(s, 0, 0)
	return v, err
}

func decodeJSONValue(s string, pos, depth int) (jsonValue, int, error) {
	if depth > maxJSONDepth {
		return nil, 0, jsonErrorf("nested too deeply")
	}
	pos = skipSpace(s, pos)
	if pos >= len(s) {
		return nil, 0, jsonErrorf("expected data")
	}
	switch c := s[pos]; {
	case c == '"':
		return decodeJSONString(s, pos)
	case c == '-' || isDigit(c):
		return decodeJSONNumber(s, pos)
	case c == 't' || c == 'f' || c == 'n':
		end, err := skipJSON(s, pos, depth)
		if err != nil {
			return nil, 0, err
		}
		switch s[pos:end] {
		case "true":
			return true, end, nil
		case "false":
			return false, end, nil
		}
		return nil, end, nil
	case c == '[':
		list := []jsonValue{}
		pos++
		for i := 0; ; i++ {
			pos = skipSpace(s, pos)
			if pos < len(s) && s[pos] == ']' {
				return list, pos + 1, nil
			}
			if i > 0 {
				if pos >= len(s) || s[pos] != ',' {
					return nil, 0, jsonErrorf("missing comma at %s", snippet(s, pos))
				}
				pos++
			}
			v, next, err := decodeJSONValue(s, pos, depth+1)
			if err != nil {
				return nil, 0, err
			}
			list = append(list, v)
			pos = next
		}
	case c == '{':
		obj := jsonObject{}
		pos++
		for i := 0; ; i++ {
			pos = skipSpace(s, pos)
			if pos < len(s) && s[pos] == '}' {
				return obj, pos + 1, nil
			}
			if i > 0 {
				if pos >= len(s) || s[pos] != ',' {
					return nil, 0, jsonErrorf("missing comma at %s", snippet(s, pos))
				}
				pos = skipSpace(s, pos+1)
			}
			key, next, err := decodeJSONKey(s, pos)
			if err != nil {
				return nil, 0, err
			}
			v, next, err := decodeJSONValue(s, next, depth+1)
			if err != nil {
				return nil, 0, err
			}
			obj[key] = v
			pos = next
		}
	default:
		return nil, 0, jsonErrorf("invalid type at %s", snippet(s, pos))
	}
}

// decodeJSONKey reads an object key and the colon after it (jsonReadKeyZN): escapes are
// not allowed in keys.
func decodeJSONKey(s string, pos int) (string, int, error) {
	if pos >= len(s) || s[pos] != '"' {
		return "", 0, jsonErrorf("expected string at %s", snippet(s, pos))
	}
	end := pos + 1
	for end < len(s) && s[end] != '"' {
		if s[end] == '\\' {
			return "", 0, jsonErrorf("escape character not allowed in key at %s", snippet(s, end))
		}
		end++
	}
	if end >= len(s) {
		return "", 0, jsonErrorf("expected '\"' but found end of value")
	}
	key := s[pos+1 : end]
	next := skipSpace(s, end+1)
	if next >= len(s) || s[next] != ':' {
		return "", 0, jsonErrorf("expected : after key '%s' at %s", key, snippet(s, next))
	}
	return key, next + 1, nil
}

func decodeJSONNumber(s string, pos int) (jsonValue, int, error) {
	text, end, err := scanJSONNumber(s, pos)
	if err != nil {
		return nil, 0, err
	}
	if text[0] == '-' {
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, 0, jsonErrorf("number %s is out of range", text)
		}
		return v, end, nil
	}
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return nil, 0, jsonErrorf("number %s is out of range", text)
	}
	return v, end, nil
}

// renderJSON appends v rendered like jsonFromVar(): compact, object keys sorted.
func renderJSON(dst []byte, v jsonValue) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, t), nil
	case uint64:
		return strconv.AppendUint(dst, t, 10), nil
	case int64:
		return strconv.AppendInt(dst, t, 10), nil
	case string:
		return appendJSONString(dst, t), nil
	case []jsonValue:
		dst = append(dst, '[')
		for i, e := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = renderJSON(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case jsonObject:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if !jsonKeyValid(k) {
				return nil, jsonErrorf("object key %q cannot be written", k)
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, k...)
			dst = append(dst, '"', ':')
			var err error
			if dst, err = renderJSON(dst, t[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	default:
		return nil, jsonErrorf("unsupported value type %T", v)
	}
}

// canonicalJSON decodes s and renders it again (jsonFromVar(jsonReadVar(s))).
func canonicalJSON(s string) (string, error) {
	v, err := parseJSONValue(s)
	if err != nil {
		return "", err
	}
	out, err := renderJSON(nil, v)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// jsonMember is one key of an object read by jsonReader, with the raw text of its value.
type jsonMember struct {
	key     string
	escaped bool // the key contains a backslash (pgBackRest refuses to read such a key)
	value   string
}

// jsonReader reads the members of one JSON object in order, the way pgBackRest's typed
// readers do: expect(key) skips smaller keys and stops (without consuming) at a larger one,
// so keys that are out of order are silently missed, as they are by pgBackRest.
type jsonReader struct {
	members []jsonMember
	pos     int
}

// newJSONReader splits the object s into members. s must already be valid per validateJSON.
func newJSONReader(s string) (*jsonReader, error) {
	pos := skipSpace(s, 0)
	if pos >= len(s) || s[pos] != '{' {
		return nil, jsonErrorf("expected object but found %s", jsonKind(s, pos))
	}
	r := &jsonReader{}
	pos++
	for i := 0; ; i++ {
		pos = skipSpace(s, pos)
		if pos < len(s) && s[pos] == '}' {
			return r, nil
		}
		if i > 0 {
			if pos >= len(s) || s[pos] != ',' {
				return nil, jsonErrorf("missing comma at %s", snippet(s, pos))
			}
			pos = skipSpace(s, pos+1)
		}
		if pos >= len(s) || s[pos] != '"' {
			return nil, jsonErrorf("expected string at %s", snippet(s, pos))
		}
		keyEnd, err := skipJSONString(s, pos)
		if err != nil {
			return nil, err
		}
		raw := s[pos+1 : keyEnd-1]
		colon := skipSpace(s, keyEnd)
		if colon >= len(s) || s[colon] != ':' {
			return nil, jsonErrorf("expected : after key at %s", snippet(s, colon))
		}
		valueStart := skipSpace(s, colon+1)
		valueEnd, err := skipJSON(s, valueStart, 1)
		if err != nil {
			return nil, err
		}
		r.members = append(r.members, jsonMember{
			key:     raw,
			escaped: strings.IndexByte(raw, '\\') >= 0,
			value:   s[valueStart:valueEnd],
		})
		pos = valueEnd
	}
}

// keyCompare emulates strncmp(want, next, strlen(next)) as used by jsonReadKeyExpect: a
// wanted key that starts with the next key compares equal.
func keyCompare(want, next string) int {
	for i := 0; i < len(next); i++ {
		var a byte
		if i < len(want) {
			a = want[i]
		}
		if a != next[i] {
			return int(a) - int(next[i])
		}
	}
	return 0
}

// expect advances to key and returns its raw value, or reports that it is absent.
func (r *jsonReader) expect(key string) (string, bool, error) {
	for r.pos < len(r.members) {
		m := r.members[r.pos]
		if m.escaped {
			return "", false, jsonErrorf("escape character not allowed in key '%s'", m.key)
		}
		c := keyCompare(key, m.key)
		if c == 0 {
			r.pos++
			return m.value, true, nil
		}
		if c < 0 {
			return "", false, nil
		}
		r.pos++
	}
	return "", false, nil
}

// require is expect for a key that must be present.
func (r *jsonReader) require(key string) (string, error) {
	v, ok, err := r.expect(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", jsonErrorf("required key '%s' not found", key)
	}
	return v, nil
}

// jsonNumberText checks that raw is a number and returns its text.
func jsonNumberText(raw string) (string, error) {
	if k := jsonKind(raw, 0); k != "number" {
		return "", jsonErrorf("expected number but found %s", k)
	}
	text, _, err := scanJSONNumber(raw, skipSpace(raw, 0))
	return text, err
}

// jsonUint64 reads a non-negative number (jsonReadUInt64).
func jsonUint64(raw string) (uint64, error) {
	text, err := jsonNumberText(raw)
	if err != nil {
		return 0, err
	}
	if text[0] == '-' {
		return 0, jsonErrorf("%s is out of range for uint64", text)
	}
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, jsonErrorf("%s is out of range for uint64", text)
	}
	return v, nil
}

// jsonUint32 reads a number in [0, UINT_MAX] (jsonReadUInt).
func jsonUint32(raw string) (uint32, error) {
	v, err := jsonUint64(raw)
	if err != nil {
		return 0, err
	}
	if v > 1<<32-1 {
		return 0, jsonErrorf("%d is out of range for uint", v)
	}
	return uint32(v), nil
}

// jsonInt64 reads a signed number (jsonReadInt64).
func jsonInt64(raw string) (int64, error) {
	text, err := jsonNumberText(raw)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, jsonErrorf("%s is out of range for int64", text)
	}
	return v, nil
}

// jsonBool reads true or false (jsonReadBool).
func jsonBool(raw string) (bool, error) {
	switch s := strings.TrimLeft(raw, " \t\r\n"); {
	case strings.HasPrefix(s, "true"):
		return true, nil
	case strings.HasPrefix(s, "false"):
		return false, nil
	default:
		return false, jsonErrorf("expected bool but found %s", jsonKind(raw, 0))
	}
}

// jsonStringOrNull reads a string, or null (jsonReadStr); ok is false for null.
func jsonStringOrNull(raw string) (s string, ok bool, err error) {
	pos := skipSpace(raw, 0)
	if jsonKind(raw, pos) == "null" {
		return "", false, nil
	}
	s, _, err = decodeJSONString(raw, pos)
	return s, err == nil, err
}

// jsonStr reads a string that must not be null.
func jsonStr(raw string) (string, error) {
	s, ok, err := jsonStringOrNull(raw)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", jsonErrorf("expected string but found null")
	}
	return s, nil
}

// jsonStrList reads an array of strings (jsonReadStrLst).
func jsonStrList(raw string) ([]string, error) {
	v, err := parseJSONValue(raw)
	if err != nil {
		return nil, err
	}
	list, ok := v.([]jsonValue)
	if !ok {
		return nil, jsonErrorf("expected array but found %s", jsonKind(raw, 0))
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, jsonErrorf("expected array of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

// jsonStringMap reads an object whose values are all strings (annotations).
func jsonStringMap(raw string) (map[string]string, error) {
	v, err := parseJSONValue(raw)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(jsonObject)
	if !ok {
		return nil, jsonErrorf("expected object but found %s", jsonKind(raw, 0))
	}
	out := make(map[string]string, len(obj))
	for k, e := range obj {
		s, ok := e.(string)
		if !ok {
			return nil, jsonErrorf("expected a string value for key '%s'", k)
		}
		out[k] = s
	}
	return out, nil
}

// renderStringMap renders an annotation object with sorted keys.
func renderStringMap(m map[string]string) (string, error) {
	obj := make(jsonObject, len(m))
	for k, v := range m {
		obj[k] = v
	}
	out, err := renderJSON(nil, obj)
	return string(out), err
}
