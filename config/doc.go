// Package config resolves pgsidecar's configuration, which is pgBackRest's: the same option names, types, defaults,
// dependencies and sources, so that an existing pgbackrest.conf, PGBACKREST_* environment or PGO PostgresCluster
// works unchanged.
//
// Load reads, in pgBackRest 2.45's order of precedence:
//
//   - the command line: pgsidecar [--opt=value|--opt value|--no-opt|--reset-opt ...] <command> [params...];
//   - PGBACKREST_<OPTION> environment variables (passed in, never read from the process);
//   - configuration files: pgbackrest.conf (or --config) and conf.d/*.conf (or --config-include-path), sections
//     [<stanza>:<command>], [<stanza>], [global:<command>] and [global], first match wins;
//   - or, instead of the INI main file, a PGO YAML file (a PostgresCluster manifest or its backups.pgbackrest
//     section), which contributes its global map and repos to the global section, plus PGO's defaults (repoN-path
//     /pgbackrest/repoN, pg1-path /pgdata/pg<version>, pg1-port, pg1-socket-path /tmp/postgres, stanza db) that apply
//     only when nothing else sets them. conf.d is read with YAML too, because PGO mounts Secrets there;
//   - pgBackRest's defaults. With an INI file the default repository path is pgBackRest's /var/lib/pgbackrest; with
//     YAML it is PGO's /pgbackrest/repoN.
//
// The option table (optiondefs.go) is pgsidecar's copy of pgBackRest 2.45's config.yaml. Every option pgBackRest knows
// is accepted, including deprecated names; options pgsidecar has no use for are reported by Config.Ignored. Every
// problem is reported at once, each naming the option and where it came from; values of secure options (passphrases,
// keys, tokens) never appear in errors or in Describe's output, and the Secret type redacts itself when printed.
//
// pgsidecar supports repo1 to repo4 (pgBackRest allows 256).
package config
