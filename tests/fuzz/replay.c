/*
 * Without libFuzzer: run a fuzz target over its seed corpus, then over
 * deterministic mutations of each seed (byte flips, truncations,
 * insertions), so ctest exercises the parser under ASan/UBSan.
 *   fuzz_X CORPUS_DIR [ITERATIONS]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  long iterations = argc > 2 ? atol(argv[2]) : 2000;
  DIR *d = opendir(argv[1]);
  if (!d) return 2;
  struct dirent *e;
  int seeds = 0;
  static uint8_t buf[1 << 16], mut[1 << 16];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    size_t n = fread(buf, 1, sizeof buf / 2, f);
    fclose(f);
    seeds++;
    LLVMFuzzerTestOneInput(buf, n);
    for (long i = 0; i < iterations; i++) {
      size_t m = n;
      memcpy(mut, buf, n);
      int edits = 1 + (int)(next() % 4);
      for (int k = 0; k < edits; k++) {
        uint64_t r = next();
        switch (r % 4) {
          case 0:
            if (m) mut[(r >> 8) % m] ^= (uint8_t)(1u << ((r >> 40) % 8));
            break;
          case 1:
            if (m) mut[(r >> 8) % m] = (uint8_t)(r >> 32);
            break;
          case 2:
            if (m) m = (r >> 8) % m;
            break;
          case 3:
            if (m + 1 < sizeof mut) {
              size_t at = m ? (r >> 8) % m : 0;
              memmove(mut + at + 1, mut + at, m - at);
              mut[at] = (uint8_t)(r >> 32);
              m++;
            }
            break;
        }
      }
      LLVMFuzzerTestOneInput(mut, m);
    }
  }
  closedir(d);
  printf("%d seed(s), %ld mutation(s) each: no crash\n", seeds, iterations);
  return seeds ? 0 : 1;
}
