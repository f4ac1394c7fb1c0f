/* SPDX-License-Identifier: MIT */
/* api_dashboard.c - GET / : the dashboard page, a static file built into
 * the binary. It needs no credentials: the page holds no data; what it
 * shows comes from API calls made with the token pasted into it. */
#include "master/api.h"
#include "master/dashboard.h"

/* The page is one file with its script and style inline, talking to this
 * origin only. */
#define DASHBOARD_CSP                                                                              \
	"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"               \
	" connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"          \
	" frame-ancestors 'none'"

int efs_api_dashboard(struct efs_http_req *req)
{
	int r;
	if ((r = efs_http_add_header(req, "Cache-Control", "no-cache")) < 0 ||
	    (r = efs_http_add_header(req, "Content-Security-Policy", DASHBOARD_CSP)) < 0 ||
	    (r = efs_http_add_header(req, "X-Content-Type-Options", "nosniff")) < 0 ||
	    (r = efs_http_add_header(req, "Referrer-Policy", "no-referrer")) < 0)
		return r;
	return efs_http_reply_bytes(req, 200, "text/html; charset=utf-8", efs_dashboard_html,
				    efs_dashboard_html_len);
}
