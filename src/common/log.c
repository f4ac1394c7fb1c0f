/* SPDX-License-Identifier: MIT */
/* log.c - timestamped, levelled log lines on stderr. */
#include "echofs/log.h"
#include "echofs/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Process-wide on purpose: there is one stderr per process, and main sets
 * these once, before any thread starts (LOG_LEVEL, the binary's name).
 * Two masters in one process (a test) share them, which is harmless. The
 * only module-level mutable state besides codec.c's thread key. */
static enum efs_log_level log_level = EFS_LOG_INFO;
static char log_component[32] = "echofs";

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void efs_log_set_component(const char *name)
{
	efs_strlcpy(log_component, name, sizeof(log_component));
}

void efs_log_set_level(enum efs_log_level level)
{
	log_level = level;
}

int efs_log_parse_level(const char *s, enum efs_log_level *out)
{
	static const struct {
		const char *name;
		enum efs_log_level level;
	} names[] = {
		{"debug", EFS_LOG_DEBUG}, {"info", EFS_LOG_INFO},   {"warn", EFS_LOG_WARN},
		{"warning", EFS_LOG_WARN}, {"error", EFS_LOG_ERROR},
	};
	for (size_t i = 0; i < EFS_ARRAY_SIZE(names); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

void efs_log(enum efs_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;

	if (level < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ",
			      ts.tv_nsec / 1000000, level_names[level], log_component);
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2) /* truncated: keep the line a line */
		n = sizeof(line) - 2;
	/* One log line is one line: control characters from the network
	 * (paths, names) are shown as '?'. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = '?';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
