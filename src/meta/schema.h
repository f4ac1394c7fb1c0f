/* SPDX-License-Identifier: MIT */
/* schema.h - the versioned schema migrations (private to src/meta). */
#ifndef ECHOFS_META_SCHEMA_H
#define ECHOFS_META_SCHEMA_H

#include <stddef.h>

struct efs_migration {
	int version;
	const char *sql; /* ;-separated statements, valid for SQLite and PostgreSQL */
	/* When not NULL, PostgreSQL runs this instead of @sql (a dialect
	 * difference the common subset cannot express). */
	const char *postgres_sql;
};

extern const struct efs_migration efs_migrations[];
extern const size_t efs_migration_count;

/* The highest schema version this binary knows (the last migration's). A
 * store whose efs_schema holds a higher one was migrated by a newer
 * binary: opening it is refused (-EPROTONOSUPPORT from the open), since
 * this one would write rows the newer schema does not expect. */
int efs_schema_latest(void);

#endif
