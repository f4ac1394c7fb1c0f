/* SPDX-License-Identifier: MIT */
/* log.h - one line per event on stderr: UTC timestamp, level, component.
 *
 *   2026-11-26T10:00:00.123Z INFO  master: listening on 0.0.0.0:8080
 *
 * Thread-safe (each line is written with one call). The level comes from
 * LOG_LEVEL: debug, info, warn or error.
 */
#ifndef ECHOFS_LOG_H
#define ECHOFS_LOG_H

#include "echofs/common.h"

enum efs_log_level {
	EFS_LOG_DEBUG = 0,
	EFS_LOG_INFO = 1,
	EFS_LOG_WARN = 2,
	EFS_LOG_ERROR = 3,
};

/* Sets the component name printed on every line ("master", "worker"). */
void efs_log_set_component(const char *name);
void efs_log_set_level(enum efs_log_level level);
/* Parses "debug", "info", "warn"/"warning", "error". 0 or -EINVAL. */
int efs_log_parse_level(const char *s, enum efs_log_level *out);

void efs_log(enum efs_log_level level, const char *fmt, ...) EFS_PRINTF(2, 3);

#define efs_debug(...) efs_log(EFS_LOG_DEBUG, __VA_ARGS__)
#define efs_info(...) efs_log(EFS_LOG_INFO, __VA_ARGS__)
#define efs_warn(...) efs_log(EFS_LOG_WARN, __VA_ARGS__)
#define efs_error(...) efs_log(EFS_LOG_ERROR, __VA_ARGS__)

#endif
