/*
 * The dashboard page served on the health port (GET /dashboard), built
 * into the binary: dashboard/index.html, turned into a C array when the
 * project is built (dashboard/embed.cmake). No build step for users, no
 * file to install, nothing fetched from elsewhere.
 */
#ifndef WR_DASHBOARD_H
#define WR_DASHBOARD_H

#include <stddef.h>

extern const char wr_dashboard_html[]; /* not NUL-terminated */
extern const size_t wr_dashboard_html_len;

#endif
