// Package backup takes online backups of a running PostgreSQL cluster (13 to 17) into one
// repository in pgBackRest 2.45's format, so that stock `pgbackrest restore` restores them.
//
// The pieces are: Walk, the data directory walk with pgBackRest's exclusions, which
// produces the file, path, link and target lists of a manifest; ApplyPrior, the
// differential/incremental reference logic of manifestBuildIncr(); a parallel copy
// pipeline (read -> SHA-1 and page checksums -> compress -> encrypt -> storage.Store.Put,
// streaming), which with repo-bundle=y appends small files, each compressed and
// encrypted on its own, to bundle objects as pgBackRest 2.45 does (see bundle.go); and
// Run, which drives pg_backup_start/pg_backup_stop over a pgx connection, writes the
// manifest, backup.history and backup.info, and checks that the backup's WAL reached the
// archive.
package backup
