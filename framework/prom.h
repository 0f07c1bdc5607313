/*
 * /metrics: the Prometheus text exposition format (version 0.0.4) of one
 * snapshot (snapshot.h). docs/monitoring.md lists every metric with its type
 * and labels; keep them in step. `promtool check metrics` passes on it (an
 * integration test runs it).
 */
#ifndef WR_PROM_H
#define WR_PROM_H

#include <stddef.h>

#include "snapshot.h"

/* The page, malloc'd (*len bytes, NUL-terminated), or NULL when out of
 * memory or over WR_PROM_MAX. */
#define WR_PROM_MAX (8u << 20)
char *wr_prom_render(const wr_snap *s, size_t *len);

#endif
