package integration

import (
	"regexp"
	"strings"
	"testing"
)

// infoExtraLine matches a line that pgsidecar's info adds to pgBackRest's
// text report (agent.Info): a repository's recovery window, the daemon's
// running and queued backups.
var infoExtraLine = regexp.MustCompile(`^    (recovery window \(repo[1-4]\)|backup running|backup queued): \S`)

// withoutPgsidecarInfo returns a text report of pgsidecar info without
// pgsidecar's additions: the block of infoExtraLine lines set off by a blank
// line at the end of a stanza. Anything else stays, so that comparing the
// rest with pgbackrest's report still finds every difference.
func withoutPgsidecarInfo(t testing.TB, report string) string {
	t.Helper()
	lines := strings.SplitAfter(report, "\n")
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		if lines[i] == "\n" && i+1 < len(lines) && infoExtraLine.MatchString(lines[i+1]) {
			j := i + 1
			for j < len(lines) && infoExtraLine.MatchString(lines[j]) {
				j++
			}
			if j == len(lines) || (lines[j] == "" && j == len(lines)-1) || (lines[j] == "\n" && j+1 < len(lines) && strings.HasPrefix(lines[j+1], "stanza: ")) {
				i = j - 1
				continue
			}
		}
		out.WriteString(lines[i])
	}
	return out.String()
}

// pgsidecarInfoLines returns the lines pgsidecar's info adds to a text report,
// without their indent.
func pgsidecarInfoLines(report string) []string {
	var out []string
	for _, l := range strings.Split(report, "\n") {
		if infoExtraLine.MatchString(l) {
			out = append(out, strings.TrimPrefix(l, "    "))
		}
	}
	return out
}

// withoutPgsidecarInfoJSON removes pgsidecar's key from each stanza of a
// decoded `info --output=json` report.
func withoutPgsidecarInfoJSON(report any) any {
	if stanzas, ok := report.([]any); ok {
		for _, s := range stanzas {
			if m, ok := s.(map[string]any); ok {
				delete(m, "pgsidecar")
			}
		}
	}
	return report
}
