/* SPDX-License-Identifier: MIT */
/* dashboard.h - the dashboard page (src/master/dashboard.html), built into
 * the binary: the Makefile turns the file into a C array with
 * scripts/embed.sh. */
#ifndef ECHOFS_MASTER_DASHBOARD_H
#define ECHOFS_MASTER_DASHBOARD_H

#include <stddef.h>

extern const unsigned char efs_dashboard_html[]; /* NUL-terminated */
extern const size_t efs_dashboard_html_len;	 /* without the NUL */

#endif
