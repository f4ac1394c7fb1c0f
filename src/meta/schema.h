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

#endif
