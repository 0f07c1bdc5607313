/* Fuzz target: the header blob parser the worker runs on every job. */
#include <stddef.h>
#include <stdint.h>

#include "headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct warren_headers h;
  if (wr_hdr_parse(&h, data, size) == 0) {
    warren_value v;
    const char *name;
    for (size_t i = 0; i < wr_hdr_count(&h); i++) {
      wr_hdr_at(&h, i, &name, &v);
      wr_hdr_get(&h, name, &v);
    }
  }
  return 0;
}
