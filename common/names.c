#include "names.h"

#include <stdio.h>

char *wr_name_retry_queue(const char *queue, double delay_s, char *buf,
                          size_t len) {
  snprintf(buf, len, "%s.retry.%lldms", queue,
           (long long)(delay_s * 1000.0 + 0.5));
  return buf;
}

char *wr_name_dlx(const char *queue, char *buf, size_t len) {
  snprintf(buf, len, "%s.dlx", queue);
  return buf;
}

char *wr_name_dlq(const char *queue, char *buf, size_t len) {
  snprintf(buf, len, "%s.dlq", queue);
  return buf;
}
