package repo

import (
	"errors"
	"testing"
)

func TestJSONStringEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"/<>&", `"/<>&"`},                   // no HTML escaping, '/' raw
		{"\x01\x1f\x7f", "\"\x01\x1f\x7f\""}, // other control characters raw
		{"caf\xc3\xa9 \xff", "\"caf\xc3\xa9 \xff\""},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := jsonString(tt.in); got != tt.want {
			t.Errorf("jsonString(%q) = %q, want %q", tt.in, got, tt.want)
		}
		dec, end, err := decodeJSONString(tt.want, 0)
		if err != nil || dec != tt.in || end != len(tt.want) {
			t.Errorf("decode(%q) = %q, %d, %v", tt.want, dec, end, err)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		valid bool
	}{
		{`1`, true}, {`-12`, true}, {`007`, true}, {`1.5`, false}, {`1e3`, false}, {`-`, false},
		{`true`, true}, {`false`, true}, {`null`, true}, {`tru`, false}, {`nul`, false},
		{`"a"`, true}, {`"a`, false}, {`"\q"`, true}, {`"\u0041x"`, true}, {`"\u0041"`, false}, {`"\u00e9x"`, false}, {`"\`, false},
		{`{}`, true}, {`{"a":1}`, true}, {`{"a":1,}`, false}, {`{,"a":1}`, false}, {`{"a" : [1, {"b": null}] }`, true},
		{`{"a"}`, false}, {`{1:2}`, false}, {`{"a":1 "b":2}`, false}, {`{"a\"b":1}`, true},
		{`[]`, true}, {`[1,2]`, true}, {`[1,]`, false}, {`[,1]`, false}, {`[1 2]`, false}, {`[`, false},
		{` 1 `, true}, {"\t1\r", true}, {``, false}, {`1 2`, false}, {`}`, false}, {`]`, false}, {`x`, false},
		{`12345678901234567890123456789012345678901234567890123456789012345`, false}, // 64 digits or more
		{`1234567890123456789012345678901234567890123456789012345678901`, true},
	}
	for _, tt := range tests {
		err := validateJSON(tt.in)
		if (err == nil) != tt.valid {
			t.Errorf("validateJSON(%q) = %v, want valid=%v", tt.in, err, tt.valid)
		}
		if err != nil && !errors.Is(err, errJSON) {
			t.Errorf("validateJSON(%q) error does not wrap errJSON: %v", tt.in, err)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, canonical string
		ok            bool
	}{
		{`{"b":[1,-2,"x"],"a":{"d":true,"c":null}}`, `{"a":{"c":null,"d":true},"b":[1,-2,"x"]}`, true},
		{`[ 0 , [ 3 , 5 ] ]`, `[0,[3,5]]`, true},
		{`"\/\u0041x"`, `"/Ax"`, true},
		{`"\u1234x"`, ``, false}, // valid to skip, but only \u00XX can be decoded
		{`"\q"`, ``, false},
		{`{"a\"b":1}`, ``, false}, // escapes are not allowed in keys that are read
		{`18446744073709551616`, ``, false},
		{`-9223372036854775809`, ``, false},
	}
	for _, tt := range tests {
		got, err := canonicalJSON(tt.in)
		if (err == nil) != tt.ok || got != tt.canonical {
			t.Errorf("canonicalJSON(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.canonical, tt.ok)
		}
	}
}

func TestJSONReaderKeyScan(t *testing.T) {
	t.Parallel()
	r, err := newJSONReader(`{"a":1,"c":{"x":[1]},"e":"s","f":true}`)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		key   string
		found bool
		raw   string
	}{
		{"b", false, ""},         // absent: stops at "c" without consuming it
		{"c", true, `{"x":[1]}`}, // found after skipping nothing
		{"a", false, ""},         // already passed: missed like pgBackRest
		{"d", false, ""},         // absent
		{"f", true, "true"},      // "e" is skipped
		{"g", false, ""},         // end of object
	}
	for _, s := range steps {
		raw, ok, err := r.expect(s.key)
		if err != nil || ok != s.found || raw != s.raw {
			t.Errorf("expect(%q) = %q, %v, %v; want %q, %v", s.key, raw, ok, err, s.raw, s.found)
		}
	}
	// strncmp quirk: a wanted key that starts with the next key matches it.
	r, _ = newJSONReader(`{"size":1}`)
	if raw, ok, _ := r.expect("size-repo"); !ok || raw != "1" {
		t.Errorf("prefix quirk not reproduced: %q %v", raw, ok)
	}
	if _, err := r.require("timestamp"); !errors.Is(err, errJSON) {
		t.Errorf("require of a missing key: %v", err)
	}
}

func TestJSONTypedReaders(t *testing.T) {
	t.Parallel()
	if v, err := jsonUint32("4294967295"); err != nil || v != 1<<32-1 {
		t.Errorf("jsonUint32 max: %d %v", v, err)
	}
	for _, bad := range []string{"4294967296", "-1", `"1"`, "true"} {
		if _, err := jsonUint32(bad); err == nil {
			t.Errorf("jsonUint32(%s) accepted", bad)
		}
	}
	if v, err := jsonInt64("-5"); err != nil || v != -5 {
		t.Errorf("jsonInt64: %d %v", v, err)
	}
	if _, err := jsonUint64("18446744073709551616"); err == nil {
		t.Errorf("jsonUint64 overflow accepted")
	}
	if s, ok, err := jsonStringOrNull("null"); err != nil || ok || s != "" {
		t.Errorf("null string: %q %v %v", s, ok, err)
	}
	if _, err := jsonStr("null"); err == nil {
		t.Errorf("jsonStr(null) accepted")
	}
	if v, err := uintForce(`"12"`); err != nil || v != 12 {
		t.Errorf("uintForce string: %d %v", v, err)
	}
	if l, err := jsonStrList(`["a","b"]`); err != nil || len(l) != 2 {
		t.Errorf("jsonStrList: %v %v", l, err)
	}
	if _, err := jsonStrList(`["a",1]`); err == nil {
		t.Errorf("jsonStrList with a number accepted")
	}
}
