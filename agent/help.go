package agent

import (
	"fmt"
	"io"
	"strings"
)

// commandHelp lists pgsidecar's commands with a one-line summary each.
func commandHelp() [][2]string {
	return [][2]string{
		{"archive-get", "get a WAL segment from the repositories (restore_command)"},
		{"archive-push", "push a WAL segment to every repository (archive_command)"},
		{"backup", "back up the cluster to one repository"},
		{"check", "check the configuration and archiving"},
		{"config", "print the resolved configuration and the source of every value (secrets redacted)"},
		{"expire", "remove backups and WAL that retention no longer keeps"},
		{"help", "show this help, or help for a command"},
		{"info", "list the backups and WAL archive of each repository"},
		{"restore", "restore a backup, with point-in-time recovery"},
		{"run", "run the sidecar daemon: WAL look-ahead, backup queue and schedules"},
		{"stanza-create", "create the stanza in every repository"},
		{"stanza-upgrade", "upgrade the stanza after a PostgreSQL major upgrade"},
		{"verify", "verify the checksums of every WAL and backup file"},
		{"version", "print the version"},
	}
}

// commandNotes holds the longer help of some commands: the options that
// matter most to them, pgsidecar's own ones included.
func commandNotes() map[string]string {
	return map[string]string{
		"run": "\nDaemon options:\n" +
			"  --metrics-address=HOST:PORT  serve Prometheus metrics at /metrics and a health check at\n" +
			"                               /healthz over HTTP (pgsidecar's option; empty, the default: off),\n" +
			"                               e.g. 127.0.0.1:9187\n" +
			"  --archive-async              prefetch the WAL segments that follow the one restore_command\n" +
			"                               asks for, process-max at a time, into <spool-path>/archive/<stanza>/in\n" +
			"  --archive-get-queue-max      bytes of prefetched segments kept at most (default 128MiB)\n" +
			"  --spool-path                 holds the daemon's socket and the prefetched segments\n" +
			"  --process-max                WAL files pushed or fetched at once\n",
	}
}

func help(out io.Writer, params []string) error {
	if len(params) > 0 {
		for _, c := range commandHelp() {
			if c[0] == params[0] {
				_, err := fmt.Fprintf(out, "pgsidecar %s: %s\n\nUsage: pgsidecar [options] %s\n%s\nOptions use pgBackRest's names; see 'pgsidecar config' for the resolved values.\n", c[0], c[1], c[0], commandNotes()[c[0]])
				return err
			}
		}
		return withCode(48, fmt.Errorf("help: unknown command %q", params[0]))
	}
	var b strings.Builder
	b.WriteString("pgsidecar: PostgreSQL backup sidecar, pgBackRest-compatible\n\nUsage: pgsidecar [options] <command>\n\nCommands:\n")
	for _, c := range commandHelp() {
		fmt.Fprintf(&b, "  %-15s %s\n", c[0], c[1])
	}
	b.WriteString("\nCommon options: --stanza, --config, --config-include-path, --repo, --log-level-console,\n" +
		"--process-max, --compress-type. Every pgBackRest 2.45 option is accepted, in pgbackrest.conf,\n" +
		"conf.d/*.conf, PGBACKREST_* environment variables or --option=value flags; --config also\n" +
		"takes PGO's spec.backups.pgbackrest YAML.\n")
	_, err := io.WriteString(out, b.String())
	return err
}
