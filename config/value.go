package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Secret is a string that must not be printed: String, GoString, Format, MarshalText and MarshalJSON all give
// "<redacted>". Value returns the real content.
type Secret string

// redacted is what a Secret prints as.
const redacted = "<redacted>"

// Value returns the secret's content.
func (s Secret) Value() string { return string(s) }

// IsSet reports whether the secret is not empty.
func (s Secret) IsSet() bool { return s != "" }

// String returns "<redacted>".
func (s Secret) String() string { return redacted }

// GoString returns "<redacted>", so %#v does not print the secret either.
func (s Secret) GoString() string { return redacted }

// Format prints "<redacted>" for every verb, so no fmt verb reveals the secret.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText returns "<redacted>".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON returns the JSON string "<redacted>".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// errValue is the base of every value-conversion error; messages never include the value.
var errValue = errors.New("invalid value")

// parseBool converts pgBackRest's y/n. Nothing else is accepted, as in pgBackRest.
func parseBool(v string) (bool, error) {
	switch v {
	case "y":
		return true, nil
	case "n":
		return false, nil
	}
	return false, fmt.Errorf("%w: boolean must be 'y' or 'n'", errValue)
}

// parseInt converts a base-10 integer.
func parseInt(v string) (int64, error) {
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: not an integer", errValue)
	}
	return i, nil
}

// sizeUnits maps pgBackRest's size qualifiers to multipliers.
func sizeUnit(q byte) int64 {
	switch q {
	case 'b':
		return 1
	case 'k':
		return 1 << 10
	case 'm':
		return 1 << 20
	case 'g':
		return 1 << 30
	case 't':
		return 1 << 40
	case 'p':
		return 1 << 50
	}
	return 0
}

// parseSize converts a size as pgBackRest does: digits followed by an optional qualifier b, k, kb, kib, m, mb, mib, g,
// ..., p, pb, pib in any case; all qualifiers are powers of 1024.
func parseSize(v string) (int64, error) {
	s := strings.ToLower(v)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: not a size", errValue)
	}
	digits, unit := s[:i], s[i:]
	mult := int64(1)
	switch {
	case unit == "":
	case unit == "b":
	case len(unit) == 1 || (len(unit) == 2 && unit[1] == 'b') || (len(unit) == 3 && unit[1:] == "ib"):
		mult = sizeUnit(unit[0])
		if mult <= 1 {
			return 0, fmt.Errorf("%w: not a size", errValue)
		}
	default:
		return 0, fmt.Errorf("%w: not a size", errValue)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%w: size is out of range", errValue)
	}
	return n * mult, nil
}

// parseTime converts pgBackRest's time, a decimal number of seconds, to a duration with millisecond precision.
func parseTime(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > float64(math.MaxInt64/int64(time.Millisecond))/1000 {
		return 0, fmt.Errorf("%w: not a number of seconds", errValue)
	}
	return time.Duration(int64(f*1000)) * time.Millisecond, nil
}

// formatBool renders a boolean as pgBackRest does.
func formatBool(b bool) string {
	if b {
		return "y"
	}
	return "n"
}
